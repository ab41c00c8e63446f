#compdef gala-flame

autoload -U is-at-least

_gala-flame() {
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
'--input-format=[What the inputs hold (default\: recognised per input from its first lines)]:FORMAT:((auto\:"Recognised per input from its first lines"
records\:"NDJSON \`stack\` records (gala-collect); other records are ignored"
perf\:"The text output of \`perf script\`"
folded\:"Folded stacks\: \`frame;frame;…;leaf COUNT\` per line"))' \
'-o+[Write the graph to FILE instead of standard output (gzip-compressed when FILE ends in .gz)]:FILE:_files' \
'--output=[Write the graph to FILE instead of standard output (gzip-compressed when FILE ends in .gz)]:FILE:_files' \
'--format=[Output format\: an SVG flame graph, or folded stacks (\`root;…;leaf COUNT\`, sorted; with --diff, two counts per line\: base, then inputs)]:FORMAT:((svg\:"An SVG flame graph (gzip-compressed when FILE ends in .gz or .svgz)"
folded\:"Folded stacks, one \`frame;…;leaf COUNT\` a line"))' \
'-k+[Which stacks to draw when the input has several kinds (oncpu, offcpu, io_bytes, io_wait). With perf or folded input, says what the counts are (offcpu, io_wait\: microseconds; io_bytes\: bytes; blue palette)]:KIND:_default' \
'--kind=[Which stacks to draw when the input has several kinds (oncpu, offcpu, io_bytes, io_wait). With perf or folded input, says what the counts are (offcpu, io_wait\: microseconds; io_bytes\: bytes; blue palette)]:KIND:_default' \
'(-o --output)*--per=[One graph per process, container or comm, written into DIR (created if missing) as GROUP.svg (GROUP.folded with --format folded); stacks outside any container go to host.svg]:BY:_default:BY:_default' \
'--diff=[Draw a differential graph against BASE (same input format)\: red frames grew, blue ones shrank, widths are the inputs'\'']:BASE:_files' \
'(--diff --incident)--onset=[Draw what changed at TIME, from one recording\: the stacks of the intervals ending before TIME are the base, those at or after it the graph; the base is scaled by the ratio of the two windows'\'' lengths (per second). TIME\: ms since the epoch or ISO 8601 (2026-12-06T10\:15\:03Z)]:TIME:_default' \
'(--diff)--incident=[As --onset, at the start of the first incident in FILE (gala-detect'\''s anomaly records), and the window after it ends where the incident ended]:FILE:_files' \
'--window=[With --onset or --incident\: compare at most DURATION before the onset with at most DURATION after it (default\: all of the recording on each side)]:DURATION:_default' \
'*--pid=[Keep only the stacks of these processes (stack records only)]:PID:_default' \
'--title=[The graph'\''s title (default from the kind\: On-CPU, Off-CPU, Differential…)]:TEXT:_default' \
'--width=[Width of the SVG in pixels]:PIXELS:_default' \
'--colors=[Colour palette (default\: hot for on-CPU, io for off-CPU)]:PALETTE:(aqua blue green hot io java js mem orange perl python purple red rust wakeup yellow)' \
'--strict[Stop at the first bad input line or file instead of reporting and skipping it]' \
'--folded[The old spelling of --format folded]' \
'--normalize[With --diff\: scale BASE to the inputs'\'' total first, so that a longer or busier capture does not paint everything red]' \
'--include-pid[Put the process id in the root frame (\`comm-PID\`), so processes of the same name stay apart]' \
'--annotate-kernel[perf input\: mark kernel frames with \`_\[k\]\` (inferno-collapse-perf --kernel)]' \
'--annotate-jit[perf input\: mark JIT frames with \`_\[j\]\` (inferno-collapse-perf --jit)]' \
'--inverted[Draw an icicle graph\: roots at the top]' \
'*-v[Say more on stderr (repeat for more)]' \
'*--verbose[Say more on stderr (repeat for more)]' \
'(-v --verbose)-q[Print only errors on stderr]' \
'(-v --verbose)--quiet[Print only errors on stderr]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'-V[Print version]' \
'--version[Print version]' \
'*::inputs -- Input files (gzip-compressed or not); `-` or none reads standard input:_files' \
&& ret=0
}

(( $+functions[_gala-flame_commands] )) ||
_gala-flame_commands() {
    local commands; commands=()
    _describe -t commands 'gala-flame commands' commands "$@"
}

if [ "$funcstack[1]" = "_gala-flame" ]; then
    _gala-flame "$@"
else
    compdef _gala-flame gala-flame
fi
