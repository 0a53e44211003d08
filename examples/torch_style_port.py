"""A torch.cuda-style script, ported line by line to mtia_async (the blocking facade).

Each block shows the torch line it replaces as a comment. Run it: ``python
examples/torch_style_port.py`` (no GPU, no torch needed). docs/migrating-from-torch.md
explains what maps and what does not.

What the script does, as many torch.cuda scripts do: pick a device, copy data to it,
run a two-layer network on a side stream while the default stream prepares the next
batch, time the work with events, free memory with ``record_stream``, and print
memory statistics and a snapshot summary.
"""

from __future__ import annotations

import numpy as np

import mtia_async.sync as mtia  # import torch; torch.cuda -> mtia

# --- device and data -----------------------------------------------------------------------------
# torch.cuda.is_available(); torch.cuda.set_device(0)
assert mtia.is_available()
mtia.set_device(0)
dev = "mtia:0"  # dev = torch.device("cuda:0")

rng = np.random.default_rng(0)
w1_host = (rng.standard_normal((512, 256)) / 16).astype(np.float32)
w2_host = (rng.standard_normal((256, 10)) / 16).astype(np.float32)

# w1 = torch.from_numpy(w1_host).to(dev)
w1 = mtia.asarray(w1_host, device=dev)
w2 = mtia.asarray(w2_host, device=dev)
# torch.manual_seed(0); x = torch.randn(64, 512, device=dev)
mtia.manual_seed(0)
x = mtia.randn(64, 512, device=dev)

# --- a side stream, ordered after the default stream's copies -----------------------------------
side = mtia.Stream()  # side = torch.cuda.Stream()
side.wait_stream(mtia.current_stream())  # side.wait_stream(torch.cuda.current_stream())

start = mtia.Event(enable_timing=True)  # start = torch.cuda.Event(enable_timing=True)
end = mtia.Event(enable_timing=True)

with mtia.stream(side):  # with torch.cuda.stream(side):
    start.record()  # start.record()
    h = x @ w1  # h = x @ w1
    np.maximum(h, 0, out=h)  # h.relu_()
    logits = h @ w2  # logits = h @ w2
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))  # (logits - logits.amax(dim=1, keepdim=True)).exp()
    probs /= probs.sum(axis=1, keepdims=True)  # probs /= probs.sum(dim=1, keepdim=True)
    end.record()  # end.record()

# x was made on the default stream and used on side: keep its memory until side is done.
x.record_stream(side)  # x.record_stream(side)
del x  # del x

# Meanwhile the default stream prepares the next batch.
next_x = mtia.randn(64, 512)  # next_x = torch.randn(64, 512, device=dev)

# --- wait, time, read back -------------------------------------------------------------------------
end.synchronize()  # end.synchronize()
print(f"forward pass: {start.elapsed_time(end):.3f} ms on the side stream")  # start.elapsed_time(end)

# `with side:` is torch.Stream's own context manager: the same as mtia.stream(side).
with side:  # with side:
    classes = probs.argmax(axis=1)  # classes = probs.argmax(dim=1)
side.synchronize()  # side.synchronize()
result = probs.numpy()  # result = probs.cpu().numpy()
print("classes of the first 8 rows:", classes.numpy()[:8].tolist())  # classes[:8].tolist()
assert np.allclose(result.sum(axis=1), 1.0, atol=1e-5)

# The same computation on the host agrees (x was deleted: draw it again from the same seed).
mtia.manual_seed(0)
x_host = mtia.randn(64, 512).numpy()
h_host = np.maximum(x_host @ w1_host, 0)
z = h_host @ w2_host
expected = np.exp(z - z.max(axis=1, keepdims=True))
expected /= expected.sum(axis=1, keepdims=True)
assert np.allclose(result, expected, atol=1e-4), abs(result - expected).max()

# --- memory ----------------------------------------------------------------------------------------
mtia.synchronize()  # torch.cuda.synchronize()
print(f"allocated: {mtia.memory_allocated()} B, reserved: {mtia.memory_reserved()} B")  # torch.cuda.memory_*
print(mtia.memory.memory_summary(abbreviated=True).splitlines()[1])  # torch.cuda.memory.memory_summary(...)
stats = mtia.memory_stats()  # torch.cuda.memory_stats()
print("peak allocated:", stats["allocated_bytes.all.peak"], "B")

mtia.memory._record_memory_history(max_entries=1000)  # torch.cuda.memory._record_memory_history(max_entries=1000)
tmp = mtia.empty((1024, 1024))  # tmp = torch.empty(1024, 1024, device=dev)
del tmp
snap = mtia.memory._snapshot()  # snap = torch.cuda.memory._snapshot()
print("trace actions:", sorted({e["action"] for e in snap["device_traces"][0]}))
mtia.memory._record_memory_history(enabled=None)  # torch.cuda.memory._record_memory_history(enabled=None)

del next_x, h, logits, probs, classes
mtia.empty_cache()  # torch.cuda.empty_cache()
print("done")
