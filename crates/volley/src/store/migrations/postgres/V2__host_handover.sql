-- Handing a host over between workers (rebalancing when workers join, a
-- worker giving back an idle host): the worker that gives a host back sets
-- `free_at` to when another may start on it, one interval of the job's
-- slowest per-host rate after its own last request there, so the host never
-- sees two workers' requests closer together than its rate allows.
ALTER TABLE hosts ADD COLUMN free_at timestamptz;
