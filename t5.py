import json, time, asyncio
from tokenwire.client import Client, AsyncClient, GatewayError
P='/tmp/probe-cli/proxy_18791.json'
def setp(**k): json.dump(k, open(P,'w'))
G="http://127.0.0.1:18789"; X="http://127.0.0.1:18791"
with Client(G) as c:
    s=c.create([{"role":"user","content":"hi"}], model="big", size=3_000_000)
    m=s.wait(); print("big:", m.status, len(m.text), m.text[-14:])
    sid=s.id
    ch=list(c.openai_chunks(sid)); print("openai chunks:", len(ch), max(len(json.dumps(x)) for x in ch))
    ops=list(c.stream(sid)); print("compact ops:", [type(o).__name__ for o in ops], c.stream(sid).wait().text==m.text)
    s=c.create([{"role":"user","content":"hi"}], model="big", size=9_000_000)
    m=s.wait(); print("too big:", m.status, m.error, len(m.text))
# cuts in the middle of the huge event
setp(cut_after=1_000_000, cuts_left=2)
with Client(X) as c:
    s=c.stream(sid, catchup="exact"); m=s.wait(); print("cut in big event exact:", m.status, len(m.text))
setp(cut_after=1_000_000, cuts_left=2)
with Client(X) as c:
    ch=list(c.openai_chunks(sid)); print("cut openai big:", len(ch), sum(len(x["choices"][0]["delta"].get("content") or "") for x in ch if x.get("choices")))
setp(cut_after=1_000_000, cuts_left=3)
async def a():
    async with AsyncClient(X, max_retries=2) as c:
        try:
            m=await c.stream(sid, catchup="exact").wait(); print("async cut x3 with max_retries=2:", m.status)
        except ConnectionError as e: print("async gave up:", e)
asyncio.run(a())
