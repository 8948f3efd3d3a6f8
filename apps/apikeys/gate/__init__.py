"""Per-key usage counting and rate limits, on the request path (SPEC §4.9, §4.10).

From the bottom up:

* `store`: the shared Redis of `REDIS_URL`, or this process's memory without it, and
  what happens when Redis does not answer (fail open);
* `window`: a key's rate-limit window, one atomic Lua script per check;
* `counters`: a key's hour and day counters and recent IPs, one Lua script per count;
* `batch`: key uses gathered per process and sent once a second, pipelined;
* `steps`: the limit at its place in SPEC §4.10's order (a DRF throttle) and the count
  after the response.
"""
