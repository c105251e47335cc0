-- wrk walks a URL list: `wrk ... -s urls.lua http://HOST:PORT -- PATHS_FILE`,
-- each request the next path of the file (one per line), round and round.
local paths = {}
local n = 0

function init(args)
    for line in io.lines(args[1]) do
        n = n + 1
        paths[n] = line
    end
    -- Threads start at different places so they do not fetch in lockstep.
    counter = math.random(n)
end

function request()
    counter = counter % n + 1
    return wrk.format("GET", paths[counter])
end
