complete -c gala-flame -l input-format -d 'What the inputs hold (default: recognised per input from its first lines)' -r -f -a "auto\t'Recognised per input from its first lines'
records\t'NDJSON `stack` records (gala-collect); other records are ignored'
perf\t'The text output of `perf script`'
folded\t'Folded stacks: `frame;frame;…;leaf COUNT` per line'"
complete -c gala-flame -s o -l output -d 'Write the graph to FILE instead of standard output (gzip-compressed when FILE ends in .gz)' -r -F
complete -c gala-flame -l format -d 'Output format: an SVG flame graph, or folded stacks (`root;…;leaf COUNT`, sorted; with --diff, two counts per line: base, then inputs)' -r -f -a "svg\t'An SVG flame graph (gzip-compressed when FILE ends in .gz or .svgz)'
folded\t'Folded stacks, one `frame;…;leaf COUNT` a line'"
complete -c gala-flame -s k -l kind -d 'Which stacks to draw when the input has several kinds (oncpu, offcpu, io_bytes, io_wait). With perf or folded input, says what the counts are (offcpu, io_wait: microseconds; io_bytes: bytes; blue palette)' -r
complete -c gala-flame -l per -d 'One graph per process, container or comm, written into DIR (created if missing) as GROUP.svg (GROUP.folded with --format folded); stacks outside any container go to host.svg' -r
complete -c gala-flame -l diff -d 'Draw a differential graph against BASE (same input format): red frames grew, blue ones shrank, widths are the inputs\'' -r -F
complete -c gala-flame -l onset -d 'Draw what changed at TIME, from one recording: the stacks of the intervals ending before TIME are the base, those at or after it the graph; the base is scaled by the ratio of the two windows\' lengths (per second). TIME: ms since the epoch or ISO 8601 (2026-12-06T10:15:03Z)' -r
complete -c gala-flame -l incident -d 'As --onset, at the start of the first incident in FILE (gala-detect\'s anomaly records), and the window after it ends where the incident ended' -r -F
complete -c gala-flame -l window -d 'With --onset or --incident: compare at most DURATION before the onset with at most DURATION after it (default: all of the recording on each side)' -r
complete -c gala-flame -l pid -d 'Keep only the stacks of these processes (stack records only)' -r
complete -c gala-flame -l title -d 'The graph\'s title (default from the kind: On-CPU, Off-CPU, Differential…)' -r
complete -c gala-flame -l width -d 'Width of the SVG in pixels' -r
complete -c gala-flame -l colors -d 'Colour palette (default: hot for on-CPU, io for off-CPU)' -r -f -a "aqua\t''
blue\t''
green\t''
hot\t''
io\t''
java\t''
js\t''
mem\t''
orange\t''
perl\t''
python\t''
purple\t''
red\t''
rust\t''
wakeup\t''
yellow\t''"
complete -c gala-flame -l strict -d 'Stop at the first bad input line or file instead of reporting and skipping it'
complete -c gala-flame -l folded -d 'The old spelling of --format folded'
complete -c gala-flame -l normalize -d 'With --diff: scale BASE to the inputs\' total first, so that a longer or busier capture does not paint everything red'
complete -c gala-flame -l include-pid -d 'Put the process id in the root frame (`comm-PID`), so processes of the same name stay apart'
complete -c gala-flame -l annotate-kernel -d 'perf input: mark kernel frames with `_[k]` (inferno-collapse-perf --kernel)'
complete -c gala-flame -l annotate-jit -d 'perf input: mark JIT frames with `_[j]` (inferno-collapse-perf --jit)'
complete -c gala-flame -l inverted -d 'Draw an icicle graph: roots at the top'
complete -c gala-flame -s v -l verbose -d 'Say more on stderr (repeat for more)'
complete -c gala-flame -s q -l quiet -d 'Print only errors on stderr'
complete -c gala-flame -s h -l help -d 'Print help (see more with \'--help\')'
complete -c gala-flame -s V -l version -d 'Print version'
