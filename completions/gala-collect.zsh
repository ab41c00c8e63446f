#compdef gala-collect

autoload -U is-at-least

_gala-collect() {
    typeset -A opt_args
    typeset -a _arguments_options
    local ret=1

    if is-at-least 5.2; then
        _arguments_options=(-s -S -C)
    else
        _arguments_options=(-s -C)
    fi

    local context curcontext="$curcontext" state line
    _arguments "${_arguments_options[@]}" : \
'*-p+[Probes to run, comma-separated (default\: every probe this build has that needs no opt-in; see --list-probes)]:NAMES:_default' \
'*--probes=[Probes to run, comma-separated (default\: every probe this build has that needs no opt-in; see --list-probes)]:NAMES:_default' \
'-i+[Time between two collections (e.g. 5s, 500ms, 1m)]:TIME:_default' \
'--interval=[Time between two collections (e.g. 5s, 500ms, 1m)]:TIME:_default' \
'-d+[Stop after this long (e.g. 2m); default\: until interrupted]:TIME:_default' \
'--duration=[Stop after this long (e.g. 2m); default\: until interrupted]:TIME:_default' \
'-n+[Stop after this many intervals (at least 1)]:N:_default' \
'--count=[Stop after this many intervals (at least 1)]:N:_default' \
'*--pid=[Only these processes (by tgid; repeatable or comma-separated)]:PID:_default' \
'--comm=[Only processes whose comm matches this regular expression]:REGEX:_default' \
'--container=[Only processes in this container (id or unique prefix)]:ID:_default' \
'--sample-rate=[oncpu probe\: samples per second on each CPU]:HZ:_default' \
'--offcpu-min=[offcpu probe\: ignore blocks shorter than this (e.g. 100us, 1ms)]:TIME:_default' \
'--io-sample=[ioflame probe\: take a thread'\''s stack once per this many bytes read or written, on average (0\: at every call). The stack gets all the bytes since the thread'\''s last one\: fewer stack walks, the same totals]:BYTES:_default' \
'--io-sample-time=[ioflame probe\: the same for the time spent in the calls (e.g. 1ms; 0\: every call)]:TIME:_default' \
'--fault-sample=[memflame probe\: take a thread'\''s stack once per this many user page faults, on average (0\: at every fault); the stack gets every fault since the thread'\''s last one]:FAULTS:_default' \
'--bpf-stats=[Kernel BPF run-time statistics for the status record'\''s \`bpf_progs\`\: \`sampled\` turns them on for 100 ms of every second (run time per run exact, counts a sample\: scale them by \`bpf_stats.since_ns / on_ns\`); \`full\` keeps them on (exact counts, ~80 ns more per program run); \`off\` never]:MODE:((sampled\:"On for 100 ms of every second\: run time per run is exact, counts are a sample"
full\:"On all the time\: exact counts, at ~80 ns per program run"
off\:"Never on\: \`bpf_progs\` stays at zero"))' \
'--l7-max-rate=[l7 probe\: socket reads and writes per second (host-wide) whose requests are all timed. Requests, responses, errors and status classes are always counted exactly; above RATE only one request in actual/RATE of each connection is timed (the rest skip the clock reads), and each SLI'\''s \`timed_count\` says how many its latency is over. The status record'\''s \`l7.timing\` gives the share. \`unlimited\` times all]:RATE:_default' \
'--serve=[Also serve the latest interval as Prometheus text at http\://ADDR/metrics (PORT or \:PORT binds 127.0.0.1; give HOST\:PORT to expose it further). Scrapes do not drain]:ADDR:_default' \
'--serve-max-series=[With --serve\: most series one scrape shows; whole entities beyond it are left out and counted in the status record (serve_series_dropped)]:N:_default' \
'--web-config=[With --serve\: TLS and basic auth from FILE, in the web-config.yml format of Prometheus'\'' exporters (tls_server_config\: cert_file, key_file; basic_auth_users\: user\: bcrypt hash). Checked before collection starts; docs/collect.md has an example]:FILE:_files' \
'--serve-names=[With --serve\: whose names the series get\: gala (Prometheus'\'' conventions) or gopher (openEuler gala-gopher'\''s, for existing gala-ops dashboards and queries)]:NAMES:((gala\:"Prometheus'\'' conventions\: \`gala_<kind>_<metric>_<unit>\`, counters as running \`_total\` counters in base units, histograms as histograms, descriptive labels on one \`gala_<kind>_info\` series per entity"
gopher\:"gala-gopher'\''s\: \`gala_gopher_<entity>_<metric>\` gauges of each interval'\''s own value in the record'\''s unit, every series labelled with its entity'\''s keys and labels and machine_id, as gala-ops dashboards, gala-spider and gala-anteater query them"))' \
'-o+[Write to FILE instead of standard output (gzip-compressed when FILE ends in .gz)]:FILE:_files' \
'--output=[Write to FILE instead of standard output (gzip-compressed when FILE ends in .gz)]:FILE:_files' \
'--keep=[With a time pattern in -o\: keep the N newest files it names, remove older ones]:N:_default' \
'--list-probes[List the probes with their entity kinds and metrics, then exit]' \
'--threads[Also emit thread entities under each process (proc probe)]' \
'--summary[At the end, print a short summary on stderr\: entities seen, top processes by CPU and memory, the busiest disk, and alarms (OOM kills, full file systems, probe errors)]' \
'--line-buffered[Flush after every line, for live pipes (output to a terminal always is)]' \
'*-v[Say more on stderr (repeat for more)]' \
'*--verbose[Say more on stderr (repeat for more)]' \
'(-v --verbose)-q[Print only errors on stderr]' \
'(-v --verbose)--quiet[Print only errors on stderr]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'-V[Print version]' \
'--version[Print version]' \
":: :_gala-collect_commands" \
"*::: :->gala-collect" \
&& ret=0
    case $state in
    (gala-collect)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:gala-collect-command-$line[1]:"
        case $line[1] in
            (doctor)
_arguments "${_arguments_options[@]}" : \
'--probes[Print only the names of every probe that can run here (the /proc probes, and the BPF probes doctor finds supported), comma-separated, for scripts]' \
'*-v[Say more on stderr (repeat for more)]' \
'*--verbose[Say more on stderr (repeat for more)]' \
'(-v --verbose)-q[Print only errors on stderr]' \
'(-v --verbose)--quiet[Print only errors on stderr]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_gala-collect__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:gala-collect-help-command-$line[1]:"
        case $line[1] in
            (doctor)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
}

(( $+functions[_gala-collect_commands] )) ||
_gala-collect_commands() {
    local commands; commands=(
'doctor:Say what this machine supports (BTF, program types, tracepoints, permissions) and which probes therefore run fully, partly or not at all' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'gala-collect commands' commands "$@"
}
(( $+functions[_gala-collect__subcmd__doctor_commands] )) ||
_gala-collect__subcmd__doctor_commands() {
    local commands; commands=()
    _describe -t commands 'gala-collect doctor commands' commands "$@"
}
(( $+functions[_gala-collect__subcmd__help_commands] )) ||
_gala-collect__subcmd__help_commands() {
    local commands; commands=(
'doctor:Say what this machine supports (BTF, program types, tracepoints, permissions) and which probes therefore run fully, partly or not at all' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'gala-collect help commands' commands "$@"
}
(( $+functions[_gala-collect__subcmd__help__subcmd__doctor_commands] )) ||
_gala-collect__subcmd__help__subcmd__doctor_commands() {
    local commands; commands=()
    _describe -t commands 'gala-collect help doctor commands' commands "$@"
}
(( $+functions[_gala-collect__subcmd__help__subcmd__help_commands] )) ||
_gala-collect__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'gala-collect help help commands' commands "$@"
}

if [ "$funcstack[1]" = "_gala-collect" ]; then
    _gala-collect "$@"
else
    compdef _gala-collect gala-collect
fi
