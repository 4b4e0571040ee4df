const D=require('better-sqlite3');const db=new D('/tmp/cx/it/db');
for (const q of [`DELETE FROM block_location WHERE block_id IN (SELECT block_id FROM block WHERE ino = ?)`,`SELECT l.worker_id AS worker_id, l.block_id AS block_id, MIN(COALESCE(l.bytes, b.length), b.length) AS bytes FROM block b JOIN block_location l ON l.block_id = b.block_id WHERE b.ino = ?`,`DELETE FROM block WHERE ino = ?`]) {
 const ops=db.prepare('EXPLAIN '+q).all(1).map(r=>r.opcode); console.log(ops.filter(o=>/Ephemeral|Sorter|OpenRead|OpenWrite|FkCounter/.test(o)).join(','), '|', q.slice(0,60));
 const st=db.prepare(q); const t0=process.hrtime.bigint(); for(let i=0;i<5000;i++) q.startsWith('SELECT')?st.all(i):st.run(i); console.log(' ', Number(process.hrtime.bigint()-t0)/5e6,'us');
}
