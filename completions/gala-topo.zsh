#compdef gala-topo

autoload -U is-at-least

_gala-topo() {
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
'--prometheus=[Read records from a Prometheus server (http\://HOST\:PORT) that scraped \`gala-collect --serve\`, instead of from files]:URL:_default' \
'--since=[With --prometheus\: how far back to read (e.g. 30m, 2h; default 1h)]:TIME:_default' \
'--until=[With --prometheus\: end of the range, ms since the epoch (default now)]:MS:_default' \
'--step=[With --prometheus\: resample at this step instead of reading raw samples (for series scraped without timestamps)]:TIME:_default' \
'--match=[With --prometheus\: narrow by label matchers, e.g. '\''machine_id="ab12"'\'' or '\''{comm=~"redis.*"}'\'']:MATCHERS:_default' \
'-f+[Output format\: records (edge records in the stream), dot (Graphviz), mermaid, json (a node-link graph), text (an indented tree)]:FORMAT:((records\:"gala NDJSON records\: the input passed through, edges and derived entities added"
dot\:""
mermaid\:""
json\:""
text\:""))' \
'--format=[Output format\: records (edge records in the stream), dot (Graphviz), mermaid, json (a node-link graph), text (an indented tree)]:FORMAT:((records\:"gala NDJSON records\: the input passed through, edges and derived entities added"
dot\:""
mermaid\:""
json\:""
text\:""))' \
'*-l+[Only these layers, comma-separated (default\: all)\: process, app, host, vertical]:LAYERS:((process\:"Process to process (and the links under them)"
app\:"Application instance to application instance"
host\:"Host to host"
vertical\:"What runs on or belongs to what"))' \
'*--layer=[Only these layers, comma-separated (default\: all)\: process, app, host, vertical]:LAYERS:((process\:"Process to process (and the links under them)"
app\:"Application instance to application instance"
host\:"Host to host"
vertical\:"What runs on or belongs to what"))' \
'--focus=[Only what lies within --depth edges of this entity (an id, or a process, app or host name)]:ID:_default' \
'--depth=[How far from --focus to go, in edges]:N:_default' \
'--at=[One snapshot as of this time (ms since the epoch, or ISO 8601 such as 2026-12-06T10\:15\:03Z), from a recording\: records after it are not used, and only the snapshot is written]:TIME:_default' \
'--expire=[Drop an entity, and its edges, after this many intervals of its machine without a sighting; 0 keeps everything (memory then grows with every entity ever seen)]:N:_default' \
'-o+[Write to FILE instead of standard output (gzip-compressed when FILE ends in .gz)]:FILE:_files' \
'--output=[Write to FILE instead of standard output (gzip-compressed when FILE ends in .gz)]:FILE:_files' \
'--keep=[With a time pattern in -o\: keep the N newest files it names, remove older ones]:N:_default' \
'--strict[Stop at the first bad input line or file instead of reporting and skipping it]' \
'--only[Print only gala-topo'\''s own records, not the input'\''s (NDJSON)]' \
'--detail[Also draw per-flow and per-thread nodes (tcp_link, lb_link, thread, endpoint, sli, dns) in dot, mermaid, json and text, which leave them out by default]' \
'--kernel-threads[Also draw kernel threads (kthreadd and its children\: kworkers, ksoftirqd…) in dot, mermaid, json and text, which leave them out by default; NDJSON always has them]' \
'--line-buffered[Flush after every line, for live pipes (output to a terminal always is)]' \
'*-v[Say more on stderr (repeat for more)]' \
'*--verbose[Say more on stderr (repeat for more)]' \
'(-v --verbose)-q[Print only errors on stderr]' \
'(-v --verbose)--quiet[Print only errors on stderr]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'-V[Print version]' \
'--version[Print version]' \
'*::inputs -- Input files\: NDJSON records, gzip-compressed or not; `-` or none reads standard input:_files' \
&& ret=0
}

(( $+functions[_gala-topo_commands] )) ||
_gala-topo_commands() {
    local commands; commands=()
    _describe -t commands 'gala-topo commands' commands "$@"
}

if [ "$funcstack[1]" = "_gala-topo" ]; then
    _gala-topo "$@"
else
    compdef _gala-topo gala-topo
fi
