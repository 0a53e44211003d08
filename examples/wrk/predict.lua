-- wrk script for the inference service: POST /predict with a binary body (raw float32 rows).
-- Make the body first (8 rows of 256 float32, as the benchmark sends):
--   python -c "import numpy as np; np.random.default_rng(1).standard_normal((8, 256)).astype('<f4').tofile('body.bin')"
-- then: wrk -t1 -c16 -d10s --latency -s examples/wrk/predict.lua http://127.0.0.1:8000/predict
-- (WRK_BODY=path/to/body.bin reads another file). wrk prints "Non-2xx or 3xx responses: N"
-- when an answer is not a success, and socket errors, after the latency table.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
local path = os.getenv("WRK_BODY") or "body.bin"
local f = assert(io.open(path, "rb"), "make " .. path .. " first (see the top of predict.lua)")
wrk.body = f:read("*a")
f:close()
