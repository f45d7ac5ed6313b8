"""bench_peak at a tiny iteration count: its JSON rows, which levels it claims, and figures
that a register-only loop can reach.

    test_bench_peak.py PATH/TO/bench_peak

Rows: fp32_fma avx2 (ymm), fp32_fma avx512 (zmm), bf16_dot avx512_bf16 (zmm), then
sgemm_roof. A level is available exactly when /proc/cpuinfo lists its flags (the library's
AVX-512 level: avx512f, dq, bw and vl). An available row has seconds > 0, gflops > 0 and
gflops per thread no more than two instructions a cycle at 6 GHz could give (a clock read
at the wrong moment shows up as an impossible figure); an unavailable row says so and has
no figure. The roof row's fp32 peak is the best fp32 row, and its fraction the ratio.
"""
import json
import subprocess
import sys

THREADS = 2

exe = sys.argv[1]
out = subprocess.run([exe, "--threads", str(THREADS), "--iters", "20000", "--reps", "2"],
                     capture_output=True, text=True, timeout=120)
assert out.returncode == 0, (out.returncode, out.stderr)
rows = [json.loads(line) for line in out.stdout.splitlines()]
assert [(r["bench"], r["kind"]) for r in rows] == [
    ("peak", "fp32_fma"), ("peak", "fp32_fma"), ("peak", "bf16_dot"), ("peak", "sgemm_roof")], rows

flags = set()
with open("/proc/cpuinfo") as f:
    for line in f:
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
avx512 = {"avx512f", "avx512dq", "avx512bw", "avx512vl"} <= flags
expect = {  # isa: (instruction, flops per instruction, available)
    "avx2": ("vfmadd231ps ymm", 16, {"avx2", "fma"} <= flags),
    "avx512": ("vfmadd231ps zmm", 32, avx512),
    "avx512_bf16": ("vdpbf16ps zmm", 64, avx512 and "avx512_bf16" in flags),
}
assert [r["isa"] for r in rows[:3]] == list(expect), rows
for r in rows[:3]:
    instruction, fpi, available = expect[r["isa"]]
    assert r["instruction"] == instruction and r["threads"] == THREADS, r
    assert r["available"] is available, (r, sorted(flags))
    if available:
        assert set(r) == {"bench", "kind", "isa", "instruction", "threads", "available",
                          "flops_per_instruction", "iters", "reps", "seconds", "gflops"}, r
        assert r["flops_per_instruction"] == fpi and r["iters"] == 20000 and r["reps"] == 2, r
        assert r["seconds"] > 0 and r["gflops"] > 0, r
        assert r["gflops"] / THREADS <= fpi * 2 * 6.0, f"beyond 2 instructions/cycle at 6 GHz: {r}"
    else:
        assert r["note"] == "unavailable on this CPU" and "gflops" not in r, r

roof = rows[3]
assert roof["threads"] == THREADS and roof["gflops"] > 0, roof
fp32 = [r for r in rows[:2] if r["available"]]
if fp32:
    best = max(fp32, key=lambda r: r["gflops"])
    assert roof["fp32_peak_isa"] == best["isa"], roof
    assert abs(roof["fp32_peak_gflops"] - best["gflops"]) < 0.01, roof
    assert abs(roof["fraction_of_fp32_peak"] - roof["gflops"] / best["gflops"]) < 2e-3, roof
else:
    assert "fraction_of_fp32_peak" not in roof, roof
print(f"ok: {len(rows)} rows; fp32 levels {[r['isa'] for r in fp32]}, "
      f"bf16 {'available' if rows[2]['available'] else 'unavailable'}")
