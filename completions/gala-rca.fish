# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_gala_rca_global_optspecs
    string join \n strict prometheus= since= until= step= match= o/output= keep= line-buffered ranker= top= lookback= z-threshold= min-score= only no-suspects f/format= kpi= settle= history= input-format= anomaly-start= baseline= v/verbose q/quiet h/help V/version
end

function __fish_gala_rca_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_gala_rca_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_gala_rca_using_subcommand
    set -l cmd (__fish_gala_rca_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c gala-rca -n "__fish_gala_rca_needs_command" -l prometheus -d 'Read records from a Prometheus server (http://HOST:PORT) that scraped `gala-collect --serve`, instead of from files' -r
complete -c gala-rca -n "__fish_gala_rca_needs_command" -l since -d 'With --prometheus: how far back to read (e.g. 30m, 2h; default 1h)' -r
complete -c gala-rca -n "__fish_gala_rca_needs_command" -l until -d 'With --prometheus: end of the range, ms since the epoch (default now)' -r
complete -c gala-rca -n "__fish_gala_rca_needs_command" -l step -d 'With --prometheus: resample at this step instead of reading raw samples (for series scraped without timestamps)' -r
complete -c gala-rca -n "__fish_gala_rca_needs_command" -l match -d 'With --prometheus: narrow by label matchers, e.g. \'machine_id="ab12"\' or \'{comm=~"redis.*"}\'' -r
complete -c gala-rca -n "__fish_gala_rca_needs_command" -s o -l output -d 'Write to FILE instead of standard output (gzip-compressed when FILE ends in .gz)' -r -F
complete -c gala-rca -n "__fish_gala_rca_needs_command" -l keep -d 'With a time pattern in -o: keep the N newest files it names, remove older ones' -r
complete -c gala-rca -n "__fish_gala_rca_needs_command" -l ranker -d 'How to rank over the causal graph: best path to the KPI, or a random walk' -r -f -a "path\t''
walk\t''"
complete -c gala-rca -n "__fish_gala_rca_needs_command" -l top -d 'Causes reported per KPI anomaly' -r
complete -c gala-rca -n "__fish_gala_rca_needs_command" -l lookback -d 'How long before the KPI anomaly a cause may have started' -r
complete -c gala-rca -n "__fish_gala_rca_needs_command" -l z-threshold -d '|robust z| from which a metric counts as abnormal' -r
complete -c gala-rca -n "__fish_gala_rca_needs_command" -l min-score -d 'Causes scoring below this (0..1) are not reported' -r
complete -c gala-rca -n "__fish_gala_rca_needs_command" -s f -l format -d 'Output format (text and gala print only their own output, never the input)' -r -f -a "records\t'cause records, one per ranked cause (NDJSON)'
text\t'A few lines a person can act on'
gala\t'gala-inference\'s Kafka message, one JSON object per KPI anomaly'"
complete -c gala-rca -n "__fish_gala_rca_needs_command" -l kpi -d 'Which anomalies are KPIs: KIND:METRIC, METRIC may be `*` (repeatable; default sli:* and appinstance:*)' -r
complete -c gala-rca -n "__fish_gala_rca_needs_command" -l settle -d 'How long to wait after a KPI anomaly for late symptoms before inferring' -r
complete -c gala-rca -n "__fish_gala_rca_needs_command" -l history -d 'How much metric history to keep (the baseline comes from it)' -r
complete -c gala-rca -n "__fish_gala_rca_needs_command" -l input-format -d 'Input format: gala records, or a wide CSV table of metrics' -r -f -a "records\t'gala NDJSON records (`ndjson` is the old name)'
csv\t'A wide CSV table: a time column, then one column per metric'"
complete -c gala-rca -n "__fish_gala_rca_needs_command" -l anomaly-start -d 'CSV: when the incident started (seconds or ms since the epoch, or `YYYY-MM-DD HH:MM:SS` UTC); default: found by change-point detection' -r
complete -c gala-rca -n "__fish_gala_rca_needs_command" -l baseline -d 'CSV: a table of normal behaviour; the input is then all incident' -r -F
complete -c gala-rca -n "__fish_gala_rca_needs_command" -l strict -d 'Stop at the first bad input line or file instead of reporting and skipping it'
complete -c gala-rca -n "__fish_gala_rca_needs_command" -l line-buffered -d 'Flush after every line, for live pipes (output to a terminal always is)'
complete -c gala-rca -n "__fish_gala_rca_needs_command" -l only -d 'Print only this tool\'s output, not the input records'
complete -c gala-rca -n "__fish_gala_rca_needs_command" -l no-suspects -d 'With anomalies but none on a KPI, write nothing instead of suspects'
complete -c gala-rca -n "__fish_gala_rca_needs_command" -s v -l verbose -d 'Say more on stderr (repeat for more)'
complete -c gala-rca -n "__fish_gala_rca_needs_command" -s q -l quiet -d 'Print only errors on stderr'
complete -c gala-rca -n "__fish_gala_rca_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c gala-rca -n "__fish_gala_rca_needs_command" -s V -l version -d 'Print version'
complete -c gala-rca -n "__fish_gala_rca_needs_command" -a "eval" -d 'Score gala-rca over a folder of labelled cases: AC@1, AC@3 and Avg@5 per system and fault type (layout in docs/rca.md)'
complete -c gala-rca -n "__fish_gala_rca_needs_command" -a "synth" -d 'Write synthetic labelled cases (a multi-host service chain with one injected fault each) for `eval` and the benchmark'
complete -c gala-rca -n "__fish_gala_rca_needs_command" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c gala-rca -n "__fish_gala_rca_using_subcommand eval" -l ranker -d 'How to rank over the causal graph: best path to the KPI, or a random walk' -r -f -a "path\t''
walk\t''"
complete -c gala-rca -n "__fish_gala_rca_using_subcommand eval" -l top -d 'Causes reported per KPI anomaly' -r
complete -c gala-rca -n "__fish_gala_rca_using_subcommand eval" -l lookback -d 'How long before the KPI anomaly a cause may have started' -r
complete -c gala-rca -n "__fish_gala_rca_using_subcommand eval" -l z-threshold -d '|robust z| from which a metric counts as abnormal' -r
complete -c gala-rca -n "__fish_gala_rca_using_subcommand eval" -l min-score -d 'Causes scoring below this (0..1) are not reported' -r
complete -c gala-rca -n "__fish_gala_rca_using_subcommand eval" -l cases -d 'Also print each case\'s verdict'
complete -c gala-rca -n "__fish_gala_rca_using_subcommand eval" -s v -l verbose -d 'Say more on stderr (repeat for more)'
complete -c gala-rca -n "__fish_gala_rca_using_subcommand eval" -s q -l quiet -d 'Print only errors on stderr'
complete -c gala-rca -n "__fish_gala_rca_using_subcommand eval" -s h -l help -d 'Print help'
complete -c gala-rca -n "__fish_gala_rca_using_subcommand synth" -l cases -d 'Number of cases' -r
complete -c gala-rca -n "__fish_gala_rca_using_subcommand synth" -l entities -d 'Entities per case (filler processes make up the rest)' -r
complete -c gala-rca -n "__fish_gala_rca_using_subcommand synth" -l minutes -d 'Minutes of history before the fault' -r
complete -c gala-rca -n "__fish_gala_rca_using_subcommand synth" -l seed -d 'Seed of the first case' -r
complete -c gala-rca -n "__fish_gala_rca_using_subcommand synth" -l csv -d 'Also write each case as a CSV wide table (metrics-only mode)'
complete -c gala-rca -n "__fish_gala_rca_using_subcommand synth" -s v -l verbose -d 'Say more on stderr (repeat for more)'
complete -c gala-rca -n "__fish_gala_rca_using_subcommand synth" -s q -l quiet -d 'Print only errors on stderr'
complete -c gala-rca -n "__fish_gala_rca_using_subcommand synth" -s h -l help -d 'Print help'
complete -c gala-rca -n "__fish_gala_rca_using_subcommand help; and not __fish_seen_subcommand_from eval synth help" -f -a "eval" -d 'Score gala-rca over a folder of labelled cases: AC@1, AC@3 and Avg@5 per system and fault type (layout in docs/rca.md)'
complete -c gala-rca -n "__fish_gala_rca_using_subcommand help; and not __fish_seen_subcommand_from eval synth help" -f -a "synth" -d 'Write synthetic labelled cases (a multi-host service chain with one injected fault each) for `eval` and the benchmark'
complete -c gala-rca -n "__fish_gala_rca_using_subcommand help; and not __fish_seen_subcommand_from eval synth help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
