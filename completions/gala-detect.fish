# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_gala_detect_global_optspecs
    string join \n strict prometheus= since= until= step= match= input-format= baseline= model= save-model= config= print-config f/format= only emit-scores every-metric multivariate detector= direction= row-step= start= id= o/output= keep= line-buffered v/verbose q/quiet h/help V/version
end

function __fish_gala_detect_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_gala_detect_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_gala_detect_using_subcommand
    set -l cmd (__fish_gala_detect_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c gala-detect -n "__fish_gala_detect_needs_command" -l prometheus -d 'Read records from a Prometheus server (http://HOST:PORT) that scraped `gala-collect --serve`, instead of from files' -r
complete -c gala-detect -n "__fish_gala_detect_needs_command" -l since -d 'With --prometheus: how far back to read (e.g. 30m, 2h; default 1h)' -r
complete -c gala-detect -n "__fish_gala_detect_needs_command" -l until -d 'With --prometheus: end of the range, ms since the epoch (default now)' -r
complete -c gala-detect -n "__fish_gala_detect_needs_command" -l step -d 'With --prometheus: resample at this step instead of reading raw samples (for series scraped without timestamps)' -r
complete -c gala-detect -n "__fish_gala_detect_needs_command" -l match -d 'With --prometheus: narrow by label matchers, e.g. \'machine_id="ab12"\' or \'{comm=~"redis.*"}\'' -r
complete -c gala-detect -n "__fish_gala_detect_needs_command" -l input-format -d 'What the inputs are: gala NDJSON records, or CSV series' -r -f -a "records\t'gala NDJSON records'
csv\t'CSV series: a time column (or --row-step), then one column per metric'"
complete -c gala-detect -n "__fish_gala_detect_needs_command" -l baseline -d 'History to learn normal behaviour from before the inputs (same format as the inputs); nothing is reported about it. Repeat for several files' -r -F
complete -c gala-detect -n "__fish_gala_detect_needs_command" -l model -d 'Start from a model saved by --save-model' -r -F
complete -c gala-detect -n "__fish_gala_detect_needs_command" -l save-model -d 'Save what was learned (after the baseline and the inputs) to FILE' -r -F
complete -c gala-detect -n "__fish_gala_detect_needs_command" -l config -d 'KPI and rule configuration replacing the shipped one (see --print-config)' -r -F
complete -c gala-detect -n "__fish_gala_detect_needs_command" -s f -l format -d 'Output format' -r -f -a "records\t'gala records (anomaly, score), one JSON object a line'
text\t'One line per anomaly for a person'
gala\t'gala-anteater\'s Kafka anomaly message, one JSON object a line'"
complete -c gala-detect -n "__fish_gala_detect_needs_command" -l detector -d 'Detector for CSV columns and --every-metric (default: the config\'s [series])' -r -f -a "nsigma\t''
mad\t''
spectral-residual\t''
spot\t''
seasonal\t''
shift\t''"
complete -c gala-detect -n "__fish_gala_detect_needs_command" -l direction -d 'Direction for CSV columns and --every-metric (default: the config\'s [series])' -r -f -a "up\t''
down\t''
both\t''"
complete -c gala-detect -n "__fish_gala_detect_needs_command" -l row-step -d 'CSV without a time column: time between rows (e.g. 1m, 5s)' -r
complete -c gala-detect -n "__fish_gala_detect_needs_command" -l start -d 'CSV without a time column: time of the first row (YYYY-MM-DD HH:MM:SS, unix s/ms)' -r
complete -c gala-detect -n "__fish_gala_detect_needs_command" -l id -d 'CSV: the entity id the series belong to (default: the file name without extension)' -r
complete -c gala-detect -n "__fish_gala_detect_needs_command" -s o -l output -d 'Write to FILE instead of standard output (gzip-compressed when FILE ends in .gz)' -r -F
complete -c gala-detect -n "__fish_gala_detect_needs_command" -l keep -d 'With a time pattern in -o: keep the N newest files it names, remove older ones' -r
complete -c gala-detect -n "__fish_gala_detect_needs_command" -l strict -d 'Stop at the first bad input line or file instead of reporting and skipping it'
complete -c gala-detect -n "__fish_gala_detect_needs_command" -l print-config -d 'Print the shipped configuration, with the reasoning behind each default, and exit'
complete -c gala-detect -n "__fish_gala_detect_needs_command" -l only -d 'Print only gala-detect\'s own records, not the input passed through'
complete -c gala-detect -n "__fish_gala_detect_needs_command" -l emit-scores -d 'Also write the per-point anomaly score of every watched series (`score` records)'
complete -c gala-detect -n "__fish_gala_detect_needs_command" -l every-metric -d 'Watch every metric, not only configured KPIs, with the [series] detector'
complete -c gala-detect -n "__fish_gala_detect_needs_command" -l multivariate -d 'CSV: judge the columns as one machine: a joint model that names the metrics that contributed most, beside each column\'s own detector at the machine\'s false-alarm risk shared among its columns (so 38 columns do not raise 38 times the alarms)'
complete -c gala-detect -n "__fish_gala_detect_needs_command" -l line-buffered -d 'Flush after every line, for live pipes (output to a terminal always is)'
complete -c gala-detect -n "__fish_gala_detect_needs_command" -s v -l verbose -d 'Say more on stderr (repeat for more)'
complete -c gala-detect -n "__fish_gala_detect_needs_command" -s q -l quiet -d 'Print only errors on stderr'
complete -c gala-detect -n "__fish_gala_detect_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c gala-detect -n "__fish_gala_detect_needs_command" -s V -l version -d 'Print version'
complete -c gala-detect -n "__fish_gala_detect_needs_command" -a "eval" -d 'Score the detectors on labelled data: the NAB score and SMD F1 / HitRate'
complete -c gala-detect -n "__fish_gala_detect_needs_command" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c gala-detect -n "__fish_gala_detect_using_subcommand eval" -l data -d 'The data folder holding nab/ and smd/ (default: $GALA_DATA; one of the two is needed)' -r -F
complete -c gala-detect -n "__fish_gala_detect_using_subcommand eval" -s v -l verbose -d 'Say more on stderr (repeat for more)'
complete -c gala-detect -n "__fish_gala_detect_using_subcommand eval" -s q -l quiet -d 'Print only errors on stderr'
complete -c gala-detect -n "__fish_gala_detect_using_subcommand eval" -s h -l help -d 'Print help'
complete -c gala-detect -n "__fish_gala_detect_using_subcommand help; and not __fish_seen_subcommand_from eval help" -f -a "eval" -d 'Score the detectors on labelled data: the NAB score and SMD F1 / HitRate'
complete -c gala-detect -n "__fish_gala_detect_using_subcommand help; and not __fish_seen_subcommand_from eval help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
