# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_gala_collect_global_optspecs
    string join \n p/probes= list-probes i/interval= d/duration= n/count= pid= comm= container= sample-rate= offcpu-min= io-sample= io-sample-time= fault-sample= bpf-stats= l7-max-rate= threads summary serve= serve-max-series= web-config= serve-names= o/output= keep= line-buffered v/verbose q/quiet h/help V/version
end

function __fish_gala_collect_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_gala_collect_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_gala_collect_using_subcommand
    set -l cmd (__fish_gala_collect_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c gala-collect -n "__fish_gala_collect_needs_command" -s p -l probes -d 'Probes to run, comma-separated (default: every probe this build has that needs no opt-in; see --list-probes)' -r
complete -c gala-collect -n "__fish_gala_collect_needs_command" -s i -l interval -d 'Time between two collections (e.g. 5s, 500ms, 1m)' -r
complete -c gala-collect -n "__fish_gala_collect_needs_command" -s d -l duration -d 'Stop after this long (e.g. 2m); default: until interrupted' -r
complete -c gala-collect -n "__fish_gala_collect_needs_command" -s n -l count -d 'Stop after this many intervals (at least 1)' -r
complete -c gala-collect -n "__fish_gala_collect_needs_command" -l pid -d 'Only these processes (by tgid; repeatable or comma-separated)' -r
complete -c gala-collect -n "__fish_gala_collect_needs_command" -l comm -d 'Only processes whose comm matches this regular expression' -r
complete -c gala-collect -n "__fish_gala_collect_needs_command" -l container -d 'Only processes in this container (id or unique prefix)' -r
complete -c gala-collect -n "__fish_gala_collect_needs_command" -l sample-rate -d 'oncpu probe: samples per second on each CPU' -r
complete -c gala-collect -n "__fish_gala_collect_needs_command" -l offcpu-min -d 'offcpu probe: ignore blocks shorter than this (e.g. 100us, 1ms)' -r
complete -c gala-collect -n "__fish_gala_collect_needs_command" -l io-sample -d 'ioflame probe: take a thread\'s stack once per this many bytes read or written, on average (0: at every call). The stack gets all the bytes since the thread\'s last one: fewer stack walks, the same totals' -r
complete -c gala-collect -n "__fish_gala_collect_needs_command" -l io-sample-time -d 'ioflame probe: the same for the time spent in the calls (e.g. 1ms; 0: every call)' -r
complete -c gala-collect -n "__fish_gala_collect_needs_command" -l fault-sample -d 'memflame probe: take a thread\'s stack once per this many user page faults, on average (0: at every fault); the stack gets every fault since the thread\'s last one' -r
complete -c gala-collect -n "__fish_gala_collect_needs_command" -l bpf-stats -d 'Kernel BPF run-time statistics for the status record\'s `bpf_progs`: `sampled` turns them on for 100 ms of every second (run time per run exact, counts a sample: scale them by `bpf_stats.since_ns / on_ns`); `full` keeps them on (exact counts, ~80 ns more per program run); `off` never' -r -f -a "sampled\t'On for 100 ms of every second: run time per run is exact, counts are a sample'
full\t'On all the time: exact counts, at ~80 ns per program run'
off\t'Never on: `bpf_progs` stays at zero'"
complete -c gala-collect -n "__fish_gala_collect_needs_command" -l l7-max-rate -d 'l7 probe: socket reads and writes per second (host-wide) whose requests are all timed. Requests, responses, errors and status classes are always counted exactly; above RATE only one request in actual/RATE of each connection is timed (the rest skip the clock reads), and each SLI\'s `timed_count` says how many its latency is over. The status record\'s `l7.timing` gives the share. `unlimited` times all' -r
complete -c gala-collect -n "__fish_gala_collect_needs_command" -l serve -d 'Also serve the latest interval as Prometheus text at http://ADDR/metrics (PORT or :PORT binds 127.0.0.1; give HOST:PORT to expose it further). Scrapes do not drain' -r
complete -c gala-collect -n "__fish_gala_collect_needs_command" -l serve-max-series -d 'With --serve: most series one scrape shows; whole entities beyond it are left out and counted in the status record (serve_series_dropped)' -r
complete -c gala-collect -n "__fish_gala_collect_needs_command" -l web-config -d 'With --serve: TLS and basic auth from FILE, in the web-config.yml format of Prometheus\' exporters (tls_server_config: cert_file, key_file; basic_auth_users: user: bcrypt hash). Checked before collection starts; docs/collect.md has an example' -r -F
complete -c gala-collect -n "__fish_gala_collect_needs_command" -l serve-names -d 'With --serve: whose names the series get: gala (Prometheus\' conventions) or gopher (openEuler gala-gopher\'s, for existing gala-ops dashboards and queries)' -r -f -a "gala\t'Prometheus\' conventions: `gala_<kind>_<metric>_<unit>`, counters as running `_total` counters in base units, histograms as histograms, descriptive labels on one `gala_<kind>_info` series per entity'
gopher\t'gala-gopher\'s: `gala_gopher_<entity>_<metric>` gauges of each interval\'s own value in the record\'s unit, every series labelled with its entity\'s keys and labels and machine_id, as gala-ops dashboards, gala-spider and gala-anteater query them'"
complete -c gala-collect -n "__fish_gala_collect_needs_command" -s o -l output -d 'Write to FILE instead of standard output (gzip-compressed when FILE ends in .gz)' -r -F
complete -c gala-collect -n "__fish_gala_collect_needs_command" -l keep -d 'With a time pattern in -o: keep the N newest files it names, remove older ones' -r
complete -c gala-collect -n "__fish_gala_collect_needs_command" -l list-probes -d 'List the probes with their entity kinds and metrics, then exit'
complete -c gala-collect -n "__fish_gala_collect_needs_command" -l threads -d 'Also emit thread entities under each process (proc probe)'
complete -c gala-collect -n "__fish_gala_collect_needs_command" -l summary -d 'At the end, print a short summary on stderr: entities seen, top processes by CPU and memory, the busiest disk, and alarms (OOM kills, full file systems, probe errors)'
complete -c gala-collect -n "__fish_gala_collect_needs_command" -l line-buffered -d 'Flush after every line, for live pipes (output to a terminal always is)'
complete -c gala-collect -n "__fish_gala_collect_needs_command" -s v -l verbose -d 'Say more on stderr (repeat for more)'
complete -c gala-collect -n "__fish_gala_collect_needs_command" -s q -l quiet -d 'Print only errors on stderr'
complete -c gala-collect -n "__fish_gala_collect_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c gala-collect -n "__fish_gala_collect_needs_command" -s V -l version -d 'Print version'
complete -c gala-collect -n "__fish_gala_collect_needs_command" -f -a "doctor" -d 'Say what this machine supports (BTF, program types, tracepoints, permissions) and which probes therefore run fully, partly or not at all'
complete -c gala-collect -n "__fish_gala_collect_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c gala-collect -n "__fish_gala_collect_using_subcommand doctor" -l probes -d 'Print only the names of every probe that can run here (the /proc probes, and the BPF probes doctor finds supported), comma-separated, for scripts'
complete -c gala-collect -n "__fish_gala_collect_using_subcommand doctor" -s v -l verbose -d 'Say more on stderr (repeat for more)'
complete -c gala-collect -n "__fish_gala_collect_using_subcommand doctor" -s q -l quiet -d 'Print only errors on stderr'
complete -c gala-collect -n "__fish_gala_collect_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c gala-collect -n "__fish_gala_collect_using_subcommand help; and not __fish_seen_subcommand_from doctor help" -f -a "doctor" -d 'Say what this machine supports (BTF, program types, tracepoints, permissions) and which probes therefore run fully, partly or not at all'
complete -c gala-collect -n "__fish_gala_collect_using_subcommand help; and not __fish_seen_subcommand_from doctor help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
