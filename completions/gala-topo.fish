complete -c gala-topo -l prometheus -d 'Read records from a Prometheus server (http://HOST:PORT) that scraped `gala-collect --serve`, instead of from files' -r
complete -c gala-topo -l since -d 'With --prometheus: how far back to read (e.g. 30m, 2h; default 1h)' -r
complete -c gala-topo -l until -d 'With --prometheus: end of the range, ms since the epoch (default now)' -r
complete -c gala-topo -l step -d 'With --prometheus: resample at this step instead of reading raw samples (for series scraped without timestamps)' -r
complete -c gala-topo -l match -d 'With --prometheus: narrow by label matchers, e.g. \'machine_id="ab12"\' or \'{comm=~"redis.*"}\'' -r
complete -c gala-topo -s f -l format -d 'Output format: records (edge records in the stream), dot (Graphviz), mermaid, json (a node-link graph), text (an indented tree)' -r -f -a "records\t'gala NDJSON records: the input passed through, edges and derived entities added'
dot\t''
mermaid\t''
json\t''
text\t''"
complete -c gala-topo -s l -l layer -d 'Only these layers, comma-separated (default: all): process, app, host, vertical' -r -f -a "process\t'Process to process (and the links under them)'
app\t'Application instance to application instance'
host\t'Host to host'
vertical\t'What runs on or belongs to what'"
complete -c gala-topo -l focus -d 'Only what lies within --depth edges of this entity (an id, or a process, app or host name)' -r
complete -c gala-topo -l depth -d 'How far from --focus to go, in edges' -r
complete -c gala-topo -l at -d 'One snapshot as of this time (ms since the epoch, or ISO 8601 such as 2026-12-06T10:15:03Z), from a recording: records after it are not used, and only the snapshot is written' -r
complete -c gala-topo -l expire -d 'Drop an entity, and its edges, after this many intervals of its machine without a sighting; 0 keeps everything (memory then grows with every entity ever seen)' -r
complete -c gala-topo -s o -l output -d 'Write to FILE instead of standard output (gzip-compressed when FILE ends in .gz)' -r -F
complete -c gala-topo -l keep -d 'With a time pattern in -o: keep the N newest files it names, remove older ones' -r
complete -c gala-topo -l strict -d 'Stop at the first bad input line or file instead of reporting and skipping it'
complete -c gala-topo -l only -d 'Print only gala-topo\'s own records, not the input\'s (NDJSON)'
complete -c gala-topo -l detail -d 'Also draw per-flow and per-thread nodes (tcp_link, lb_link, thread, endpoint, sli, dns) in dot, mermaid, json and text, which leave them out by default'
complete -c gala-topo -l kernel-threads -d 'Also draw kernel threads (kthreadd and its children: kworkers, ksoftirqd…) in dot, mermaid, json and text, which leave them out by default; NDJSON always has them'
complete -c gala-topo -l line-buffered -d 'Flush after every line, for live pipes (output to a terminal always is)'
complete -c gala-topo -s v -l verbose -d 'Say more on stderr (repeat for more)'
complete -c gala-topo -s q -l quiet -d 'Print only errors on stderr'
complete -c gala-topo -s h -l help -d 'Print help (see more with \'--help\')'
complete -c gala-topo -s V -l version -d 'Print version'
