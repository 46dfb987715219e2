"""Our DER scorer (tests/conversations.der) against pyannote.metrics on random turn sets.

pyannote.metrics is not a dependency: install it in a side venv that sees this one's packages,

    python3 -m venv --system-site-packages /tmp/pmvenv && /tmp/pmvenv/bin/pip install pyannote.metrics
    PYTHONPATH=. .venv/bin/python scripts/bench/der_vs_pyannote.py
"""
import sys, glob
sys.path.append(glob.glob("/tmp/pmvenv/lib/python3*/site-packages")[0])
import numpy as np
from pyannote.core import Annotation, Segment
from pyannote.metrics.diarization import DiarizationErrorRate
from tests.conversations import der, RefTurn
rng = np.random.default_rng(5)
def turns(n, spk, jitter=None, base=None):
    out=[]; t=0.0
    if base is not None:
        for b in base:
            s=b.start+rng.normal(0,jitter); e=b.end+rng.normal(0,jitter)
            who=b.speaker if rng.random()>0.1 else f"S{rng.integers(spk)}"
            if e>s: out.append(RefTurn(max(0,s),e,"H"+who))
        return out
    for _ in range(n):
        t+=rng.uniform(0,1.0); d=rng.uniform(0.6,6); out.append(RefTurn(t,t+d,f"S{rng.integers(spk)}"))
        t+=d if rng.random()<0.8 else d*0.5
        if rng.random()<0.2 and out[-1].speaker==(out[-2].speaker if len(out)>1 else None): out.pop()
    return out
def ann(ts):
    a=Annotation()
    for i,t in enumerate(ts): a[Segment(t.start,t.end),i]=t.speaker
    return a
worst=[0,0]
rows=[]
for case in range(40):
    ref=turns(30,int(rng.integers(2,5)))
    hyp=turns(0,4,jitter=float(rng.uniform(0.02,0.4)),base=ref)
    for collar,key in ((0.25,0),(0.0,1)):
        ours=der(ref,hyp,collar=collar).der
        theirs=DiarizationErrorRate(collar=2*collar,skip_overlap=False)(ann(ref),ann(hyp))
        worst[key]=max(worst[key],abs(ours-theirs)); rows.append((ours,theirs))
print(f"40 random cases: max |ours - pyannote.metrics| collar 0.25 s: {worst[0]*100:.2f} points, no collar: {worst[1]*100:.2f} points")
print("mean DER ours %.2f%% theirs %.2f%%"%(100*np.mean([r[0] for r in rows]),100*np.mean([r[1] for r in rows])))
