(function(){
  var live=document.getElementById('live'),n=0;
  function tick(){
    fetch(location.pathname,{cache:'no-store'}).then(function(r){
      if(!r.ok) throw new Error('HTTP '+r.status);
      return r.text();
    }).then(function(t){
      var doc=new DOMParser().parseFromString(t,'text/html'),m=doc.getElementById('main');
      if(m){document.getElementById('main').replaceWith(m);document.title=doc.title;}
      n++;document.body.setAttribute('data-refreshed',String(n));
      live.textContent='live · '+new Date().toLocaleTimeString();live.className='live ok';
    }).catch(function(e){
      live.textContent='connection lost · retrying';live.className='live lost';
    }).then(function(){setTimeout(tick,REFRESH);});
  }
  setTimeout(tick,REFRESH);
})();
