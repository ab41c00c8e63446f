#compdef gala-detect

autoload -U is-at-least

_gala-detect() {
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
'--input-format=[What the inputs are\: gala NDJSON records, or CSV series]:FORMAT:((records\:"gala NDJSON records"
csv\:"CSV series\: a time column (or --row-step), then one column per metric"))' \
'*--baseline=[History to learn normal behaviour from before the inputs (same format as the inputs); nothing is reported about it. Repeat for several files]:FILE:_files' \
'--model=[Start from a model saved by --save-model]:FILE:_files' \
'--save-model=[Save what was learned (after the baseline and the inputs) to FILE]:FILE:_files' \
'--config=[KPI and rule configuration replacing the shipped one (see --print-config)]:FILE:_files' \
'-f+[Output format]:FORMAT:((records\:"gala records (anomaly, score), one JSON object a line"
text\:"One line per anomaly for a person"
gala\:"gala-anteater'\''s Kafka anomaly message, one JSON object a line"))' \
'--format=[Output format]:FORMAT:((records\:"gala records (anomaly, score), one JSON object a line"
text\:"One line per anomaly for a person"
gala\:"gala-anteater'\''s Kafka anomaly message, one JSON object a line"))' \
'--detector=[Detector for CSV columns and --every-metric (default\: the config'\''s \[series\])]:DETECTOR:(nsigma mad spectral-residual spot seasonal shift)' \
'--direction=[Direction for CSV columns and --every-metric (default\: the config'\''s \[series\])]:DIRECTION:(up down both)' \
'--row-step=[CSV without a time column\: time between rows (e.g. 1m, 5s)]:TIME:_default' \
'--start=[CSV without a time column\: time of the first row (YYYY-MM-DD HH\:MM\:SS, unix s/ms)]:TIME:_default' \
'--id=[CSV\: the entity id the series belong to (default\: the file name without extension)]:ID:_default' \
'-o+[Write to FILE instead of standard output (gzip-compressed when FILE ends in .gz)]:FILE:_files' \
'--output=[Write to FILE instead of standard output (gzip-compressed when FILE ends in .gz)]:FILE:_files' \
'--keep=[With a time pattern in -o\: keep the N newest files it names, remove older ones]:N:_default' \
'--strict[Stop at the first bad input line or file instead of reporting and skipping it]' \
'--print-config[Print the shipped configuration, with the reasoning behind each default, and exit]' \
'--only[Print only gala-detect'\''s own records, not the input passed through]' \
'--emit-scores[Also write the per-point anomaly score of every watched series (\`score\` records)]' \
'--every-metric[Watch every metric, not only configured KPIs, with the \[series\] detector]' \
'--multivariate[CSV\: judge the columns as one machine\: a joint model that names the metrics that contributed most, beside each column'\''s own detector at the machine'\''s false-alarm risk shared among its columns (so 38 columns do not raise 38 times the alarms)]' \
'--line-buffered[Flush after every line, for live pipes (output to a terminal always is)]' \
'*-v[Say more on stderr (repeat for more)]' \
'*--verbose[Say more on stderr (repeat for more)]' \
'(-v --verbose)-q[Print only errors on stderr]' \
'(-v --verbose)--quiet[Print only errors on stderr]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'-V[Print version]' \
'--version[Print version]' \
'::inputs -- Input files\: NDJSON records, gzip-compressed or not; `-` or none reads standard input:_files' \
":: :_gala-detect_commands" \
"*::: :->gala-detect" \
&& ret=0
    case $state in
    (gala-detect)
        words=($line[2] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:gala-detect-command-$line[2]:"
        case $line[2] in
            (eval)
_arguments "${_arguments_options[@]}" : \
'--data=[The data folder holding nab/ and smd/ (default\: \$GALA_DATA; one of the two is needed)]:DIR:_files' \
'*-v[Say more on stderr (repeat for more)]' \
'*--verbose[Say more on stderr (repeat for more)]' \
'(-v --verbose)-q[Print only errors on stderr]' \
'(-v --verbose)--quiet[Print only errors on stderr]' \
'-h[Print help]' \
'--help[Print help]' \
':bench -- Which benchmark:(nab smd all)' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_gala-detect__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:gala-detect-help-command-$line[1]:"
        case $line[1] in
            (eval)
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

(( $+functions[_gala-detect_commands] )) ||
_gala-detect_commands() {
    local commands; commands=(
'eval:Score the detectors on labelled data\: the NAB score and SMD F1 / HitRate' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'gala-detect commands' commands "$@"
}
(( $+functions[_gala-detect__subcmd__eval_commands] )) ||
_gala-detect__subcmd__eval_commands() {
    local commands; commands=()
    _describe -t commands 'gala-detect eval commands' commands "$@"
}
(( $+functions[_gala-detect__subcmd__help_commands] )) ||
_gala-detect__subcmd__help_commands() {
    local commands; commands=(
'eval:Score the detectors on labelled data\: the NAB score and SMD F1 / HitRate' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'gala-detect help commands' commands "$@"
}
(( $+functions[_gala-detect__subcmd__help__subcmd__eval_commands] )) ||
_gala-detect__subcmd__help__subcmd__eval_commands() {
    local commands; commands=()
    _describe -t commands 'gala-detect help eval commands' commands "$@"
}
(( $+functions[_gala-detect__subcmd__help__subcmd__help_commands] )) ||
_gala-detect__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'gala-detect help help commands' commands "$@"
}

if [ "$funcstack[1]" = "_gala-detect" ]; then
    _gala-detect "$@"
else
    compdef _gala-detect gala-detect
fi
