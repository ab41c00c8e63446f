#compdef gala-rca

autoload -U is-at-least

_gala-rca() {
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
'-o+[Write to FILE instead of standard output (gzip-compressed when FILE ends in .gz)]:FILE:_files' \
'--output=[Write to FILE instead of standard output (gzip-compressed when FILE ends in .gz)]:FILE:_files' \
'--keep=[With a time pattern in -o\: keep the N newest files it names, remove older ones]:N:_default' \
'--ranker=[How to rank over the causal graph\: best path to the KPI, or a random walk]:RANKER:(path walk)' \
'--top=[Causes reported per KPI anomaly]:N:_default' \
'--lookback=[How long before the KPI anomaly a cause may have started]:TIME:_default' \
'--z-threshold=[|robust z| from which a metric counts as abnormal]:Z:_default' \
'--min-score=[Causes scoring below this (0..1) are not reported]:SCORE:_default' \
'-f+[Output format (text and gala print only their own output, never the input)]:FORMAT:((records\:"cause records, one per ranked cause (NDJSON)"
text\:"A few lines a person can act on"
gala\:"gala-inference'\''s Kafka message, one JSON object per KPI anomaly"))' \
'--format=[Output format (text and gala print only their own output, never the input)]:FORMAT:((records\:"cause records, one per ranked cause (NDJSON)"
text\:"A few lines a person can act on"
gala\:"gala-inference'\''s Kafka message, one JSON object per KPI anomaly"))' \
'*--kpi=[Which anomalies are KPIs\: KIND\:METRIC, METRIC may be \`*\` (repeatable; default sli\:* and appinstance\:*)]:KIND:METRIC:_default' \
'--settle=[How long to wait after a KPI anomaly for late symptoms before inferring]:TIME:_default' \
'--history=[How much metric history to keep (the baseline comes from it)]:TIME:_default' \
'--input-format=[Input format\: gala records, or a wide CSV table of metrics]:FORMAT:((records\:"gala NDJSON records (\`ndjson\` is the old name)"
csv\:"A wide CSV table\: a time column, then one column per metric"))' \
'--anomaly-start=[CSV\: when the incident started (seconds or ms since the epoch, or \`YYYY-MM-DD HH\:MM\:SS\` UTC); default\: found by change-point detection]:TS:_default' \
'(--anomaly-start)--baseline=[CSV\: a table of normal behaviour; the input is then all incident]:NORMAL.csv:_files' \
'--strict[Stop at the first bad input line or file instead of reporting and skipping it]' \
'--line-buffered[Flush after every line, for live pipes (output to a terminal always is)]' \
'--only[Print only this tool'\''s output, not the input records]' \
'--no-suspects[With anomalies but none on a KPI, write nothing instead of suspects]' \
'*-v[Say more on stderr (repeat for more)]' \
'*--verbose[Say more on stderr (repeat for more)]' \
'(-v --verbose)-q[Print only errors on stderr]' \
'(-v --verbose)--quiet[Print only errors on stderr]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'-V[Print version]' \
'--version[Print version]' \
'::inputs -- Input files\: NDJSON records, gzip-compressed or not; `-` or none reads standard input:_files' \
":: :_gala-rca_commands" \
"*::: :->gala-rca" \
&& ret=0
    case $state in
    (gala-rca)
        words=($line[2] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:gala-rca-command-$line[2]:"
        case $line[2] in
            (eval)
_arguments "${_arguments_options[@]}" : \
'--ranker=[How to rank over the causal graph\: best path to the KPI, or a random walk]:RANKER:(path walk)' \
'--top=[Causes reported per KPI anomaly]:N:_default' \
'--lookback=[How long before the KPI anomaly a cause may have started]:TIME:_default' \
'--z-threshold=[|robust z| from which a metric counts as abnormal]:Z:_default' \
'--min-score=[Causes scoring below this (0..1) are not reported]:SCORE:_default' \
'--cases[Also print each case'\''s verdict]' \
'*-v[Say more on stderr (repeat for more)]' \
'*--verbose[Say more on stderr (repeat for more)]' \
'(-v --verbose)-q[Print only errors on stderr]' \
'(-v --verbose)--quiet[Print only errors on stderr]' \
'-h[Print help]' \
'--help[Print help]' \
':dir -- The folder of cases:_files' \
&& ret=0
;;
(synth)
_arguments "${_arguments_options[@]}" : \
'--cases=[Number of cases]:CASES:_default' \
'--entities=[Entities per case (filler processes make up the rest)]:ENTITIES:_default' \
'--minutes=[Minutes of history before the fault]:MINUTES:_default' \
'--seed=[Seed of the first case]:SEED:_default' \
'--csv[Also write each case as a CSV wide table (metrics-only mode)]' \
'*-v[Say more on stderr (repeat for more)]' \
'*--verbose[Say more on stderr (repeat for more)]' \
'(-v --verbose)-q[Print only errors on stderr]' \
'(-v --verbose)--quiet[Print only errors on stderr]' \
'-h[Print help]' \
'--help[Print help]' \
':dir -- Folder to write the cases into (created):_files' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_gala-rca__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:gala-rca-help-command-$line[1]:"
        case $line[1] in
            (eval)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(synth)
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

(( $+functions[_gala-rca_commands] )) ||
_gala-rca_commands() {
    local commands; commands=(
'eval:Score gala-rca over a folder of labelled cases\: AC@1, AC@3 and Avg@5 per system and fault type (layout in docs/rca.md)' \
'synth:Write synthetic labelled cases (a multi-host service chain with one injected fault each) for \`eval\` and the benchmark' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'gala-rca commands' commands "$@"
}
(( $+functions[_gala-rca__subcmd__eval_commands] )) ||
_gala-rca__subcmd__eval_commands() {
    local commands; commands=()
    _describe -t commands 'gala-rca eval commands' commands "$@"
}
(( $+functions[_gala-rca__subcmd__help_commands] )) ||
_gala-rca__subcmd__help_commands() {
    local commands; commands=(
'eval:Score gala-rca over a folder of labelled cases\: AC@1, AC@3 and Avg@5 per system and fault type (layout in docs/rca.md)' \
'synth:Write synthetic labelled cases (a multi-host service chain with one injected fault each) for \`eval\` and the benchmark' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'gala-rca help commands' commands "$@"
}
(( $+functions[_gala-rca__subcmd__help__subcmd__eval_commands] )) ||
_gala-rca__subcmd__help__subcmd__eval_commands() {
    local commands; commands=()
    _describe -t commands 'gala-rca help eval commands' commands "$@"
}
(( $+functions[_gala-rca__subcmd__help__subcmd__help_commands] )) ||
_gala-rca__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'gala-rca help help commands' commands "$@"
}
(( $+functions[_gala-rca__subcmd__help__subcmd__synth_commands] )) ||
_gala-rca__subcmd__help__subcmd__synth_commands() {
    local commands; commands=()
    _describe -t commands 'gala-rca help synth commands' commands "$@"
}
(( $+functions[_gala-rca__subcmd__synth_commands] )) ||
_gala-rca__subcmd__synth_commands() {
    local commands; commands=()
    _describe -t commands 'gala-rca synth commands' commands "$@"
}

if [ "$funcstack[1]" = "_gala-rca" ]; then
    _gala-rca "$@"
else
    compdef _gala-rca gala-rca
fi
