-- wrk script for scripts/bench.sh: POSTs the pre-signed deliveries of a file written by
-- examples/bench_bodies.rs, in turn, each request with its own x-terra-trace-id.
--
--   wrk -t T -c C -d 20s -s deliveries.lua URL -- BODIES_TSV RUN_ID T READY_DIR
--
-- Each line of BODIES_TSV is "<terra-signature>\t<x-terra-ordering-timestamp>\t<body>"; thread i
-- of T takes lines i, i+T, i+2T, ... (so the threads together hold the file once) and cycles
-- through them. Trace ids are "wrk-<RUN_ID>-<thread>-<counter>", unique within and across runs.
--
-- wrk starts each thread as soon as its init() returns, but starts its clock only after the last
-- thread's init(): without a gate, early threads would send during the later threads' loading
-- and inflate requests/s. So every thread marks itself ready in READY_DIR, and no request is sent
-- before the last thread's mark exists.
-- done() prints one "WRK_RESULT key=value ..." line for the script to read.

local next_thread = 0

function setup(thread)
   thread:set("thread_id", next_thread)
   next_thread = next_thread + 1
end

local function exists(path)
   local f = io.open(path, "r")
   if f then
      f:close()
      return true
   end
   return false
end

function init(args)
   local path, run_id, threads, ready_dir = args[1], args[2], tonumber(args[3]), args[4]
   if not (path and run_id and threads and ready_dir) then
      error("usage: wrk ... -s deliveries.lua URL -- BODIES_TSV RUN_ID THREADS READY_DIR")
   end
   prefix = "wrk-" .. run_id .. "-" .. thread_id .. "-"
   signatures, orderings, bodies = {}, {}, {}
   local line_no = 0
   for line in io.lines(path) do
      if line_no % threads == thread_id then
         local signature, ordering, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
         if not body then
            error(path .. ":" .. (line_no + 1) .. ": expected 3 tab-separated fields")
         end
         signatures[#signatures + 1] = signature
         orderings[#orderings + 1] = ordering
         bodies[#bodies + 1] = body
      end
      line_no = line_no + 1
   end
   if #bodies == 0 then
      error(path .. ": no bodies for thread " .. thread_id)
   end
   sent = 0
   last_ready = ready_dir .. "/" .. (threads - 1)
   local mark = assert(io.open(ready_dir .. "/" .. thread_id, "w"))
   mark:close()
   all_ready = exists(last_ready)
end

function delay()
   if all_ready then
      return 0
   end
   all_ready = exists(last_ready)
   return all_ready and 0 or 5
end

function request()
   local k = sent % #bodies + 1
   sent = sent + 1
   return wrk.format("POST", nil, {
      ["Content-Type"] = "application/json",
      ["terra-signature"] = signatures[k],
      ["x-terra-ordering-timestamp"] = orderings[k],
      ["x-terra-trace-id"] = prefix .. sent,
   }, bodies[k])
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "WRK_RESULT requests=%d duration_us=%d non2xx=%d connect_errors=%d read_errors=%d " ..
      "write_errors=%d timeouts=%d p50_us=%d p99_us=%d max_us=%d\n",
      summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.max))
end
