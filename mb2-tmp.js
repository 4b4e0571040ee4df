const D=require('better-sqlite3');const op=D.prototype.pragma;D.prototype.pragma=function(s,...a){if(process.env.SYNC&&s.startsWith('synchronous'))s='synchronous = '+process.env.SYNC;return op.call(this,s,...a)};
const acc=new Map();
const S=Object.getPrototypeOf(new D(':memory:').prepare('select 1'));
for (const m of ['run','get','all']) { const o=S[m]; S[m]=function(...a){const f0=process.resourceUsage().minorPageFault;const t0=process.hrtime.bigint();try{return o.apply(this,a)}finally{const k=this.source.slice(0,90);const e=acc.get(k)||[0,0,0];e[0]++;e[1]+=process.resourceUsage().minorPageFault-f0;e[2]+=Number(process.hrtime.bigint()-t0);acc.set(k,e);}}}
const ot=D.prototype.transaction; 
const {InodeTable}=require('./dist/src/master/inode-table.js');const fs=require('fs');
fs.rmSync('/tmp/cx/it',{recursive:true,force:true});fs.mkdirSync('/tmp/cx/it');
const t=new InodeTable('/tmp/cx/it/db',{blockSize:64<<20});
const d=t.createChild(1,'d',{type:'directory',mode:0o755,uid:0,gid:0});
const n=+process.argv[2]||2000; acc.clear();
const f0=process.resourceUsage().minorPageFault;
const t0=process.hrtime.bigint();
for(let i=0;i<n;i++)t.createChild(d.ino,'f'+i,{type:'file',mode:0o644,uid:0,gid:0},process.argv[3]?{writeType:process.argv[3]}:undefined);
const s=Number(process.hrtime.bigint()-t0)/1e9;console.log(process.env.SYNC,process.argv[3],(s*1e6/n).toFixed(0),'us/create', (process.resourceUsage().minorPageFault-f0)/n,'faults/create');
for(const [k,e] of [...acc].sort((a,b)=>b[1][2]-a[1][2]))console.log(String(e[0]).padStart(6),(e[1]/e[0]).toFixed(2).padStart(7),'flt',(e[2]/e[0]/1e3).toFixed(1).padStart(7),'us',k.replace(/\s+/g,' '));
