const D=require('better-sqlite3');const op=D.prototype.pragma;D.prototype.pragma=function(s,...a){if(process.env.SYNC&&s.startsWith('synchronous'))s='synchronous = '+process.env.SYNC;return op.call(this,s,...a)};
const {InodeTable}=require('./dist/src/master/inode-table.js');const fs=require('fs');
fs.rmSync('/tmp/cx/it',{recursive:true,force:true});fs.mkdirSync('/tmp/cx/it');
const t=new InodeTable('/tmp/cx/it/db',{blockSize:64<<20});
const d=t.createChild(1,'d',{type:'directory',mode:0o755,uid:0,gid:0});
const n=+process.argv[2]||2000;
const t0=process.hrtime.bigint();
for(let i=0;i<n;i++)t.createChild(d.ino,'f'+i,{type:'file',mode:0o644,uid:0,gid:0},process.argv[3]?{writeType:process.argv[3]}:undefined);
const s=Number(process.hrtime.bigint()-t0)/1e9;console.log(process.env.SYNC,process.argv[3],(s*1e6/n).toFixed(0),'us/create');
