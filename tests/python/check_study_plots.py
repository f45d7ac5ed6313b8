"""Checks the plots `attnsink study` wrote into DIR against what a reader needs:

- every legend lies outside the data: its entries sit below the chart's frame;
- each run has one colour in every plot (softmax's line in sink1.svg has the colour of
  its validation loss in loss.svg, and sigmoid another);
- a line lying exactly on another says so in its legend (as the runs' Sink_1 curves do
  when both are 0 at every evaluation);
- a Sink_1 that is 0 throughout is drawn on a percent scale (top tick 5), not on 0..1;
- the training-loss curve leaves out means over fewer than half an evaluation interval.

usage: check_study_plots.py DIR EVAL_EVERY
"""

import json
import os
import re
import sys
import xml.etree.ElementTree as ET

NS = "{http://www.w3.org/2000/svg}"


def frame_bottom(root):
    frames = [r for r in root.iter(NS + "rect") if r.get("fill") == "none" and r.get("stroke") == "#333333"]
    assert len(frames) == 1, "expected one chart frame, found %d" % len(frames)
    return float(frames[0].get("y")) + float(frames[0].get("height"))


def legend(root):
    """name -> (stroke colour, text y) of each legend entry: a short line, then its text."""
    elems = list(root.iter())
    out = {}
    for i, e in enumerate(elems):
        if e.tag == NS + "line" and e.get("stroke-width") == "2":
            text = next((t for t in elems[i + 1:i + 3] if t.tag == NS + "text"), None)
            if text is not None:
                out[text.text] = (e.get("stroke"), float(text.get("y")))
    return out


def main(d, eval_every):
    sink = ET.parse(os.path.join(d, "sink1.svg")).getroot()
    loss = ET.parse(os.path.join(d, "loss.svg")).getroot()
    runs = {}
    for name in ("softmax", "sigmoid"):
        with open(os.path.join(d, name, "metrics.jsonl")) as f:
            runs[name] = [json.loads(line) for line in f if line.strip()]
    for root, what in ((sink, "sink1.svg"), (loss, "loss.svg")):
        bottom = frame_bottom(root)
        for name, (_, y) in legend(root).items():
            assert y > bottom, "%s: legend entry %r at y=%g is inside the chart (bottom %g)" % (what, name, y, bottom)
    ls, ll = legend(sink), legend(loss)
    soft = [c for n, (c, _) in ls.items() if n.startswith("softmax")]
    sig = [c for n, (c, _) in ls.items() if n.startswith("sigmoid")]
    assert len(soft) == 1 and len(sig) == 1, ls
    assert soft[0] != sig[0], "softmax and sigmoid share a colour"
    assert ll["softmax validation"][0] == ll["softmax training"][0] == soft[0], (ll, ls)
    assert ll["sigmoid validation"][0] == ll["sigmoid training"][0] == sig[0], (ll, ls)
    if all(r["sink1"] == 0 for rs in runs.values() for r in rs):
        assert any("(on softmax's line)" in n for n in ls), "equal Sink_1 curves without a note: %s" % list(ls)
        ticks = [float(t.text) for t in sink.iter(NS + "text") if t.get("text-anchor") == "end"
                 and re.fullmatch(r"-?[0-9.]+", t.text or "")]
        assert max(ticks) == 5, "a flat 0 %% Sink_1 is drawn on 0..%g" % max(ticks)
    # the dashed training polylines: one point per evaluation covering >= eval_every / 2 steps
    dashed = [p for p in loss.iter(NS + "polyline") if p.get("stroke-dasharray") == "6 4"]
    want = []
    for name in ("softmax", "sigmoid"):
        steps = [r["step"] for r in runs[name]]
        want.append(sum(1 for i, s in enumerate(steps) if 2 * (s - (steps[i - 1] if i else 0)) >= eval_every))
    got = [len(p.get("points").split()) for p in dashed]
    assert sorted(got) == sorted(want), "training-loss points %s, expected %s" % (got, want)
    print("study plots: ok")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip())
    main(sys.argv[1], int(sys.argv[2]))
