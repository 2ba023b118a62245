# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_zavro_global_optspecs
    string join \n db= h/help V/version
end

function __fish_zavro_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_zavro_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_zavro_using_subcommand
    set -l cmd (__fish_zavro_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c zavro -n "__fish_zavro_needs_command" -l db -d 'SQLite store with keys and audit trail [default: the zavro folder of the user\'s data directory, e.g. ~/.local/share/zavro/zavro.db]' -r -F
complete -c zavro -n "__fish_zavro_needs_command" -s h -l help -d 'Print help'
complete -c zavro -n "__fish_zavro_needs_command" -s V -l version -d 'Print version'
complete -c zavro -n "__fish_zavro_needs_command" -f -a "serve" -d 'Receive signed Avro messages, verify them, audit every request, store and log accepted records'
complete -c zavro -n "__fish_zavro_needs_command" -f -a "send" -d 'Read JSON records from stdin, encode them as Avro, sign and send them; wait until all are accepted'
complete -c zavro -n "__fish_zavro_needs_command" -f -a "bench" -d 'Measure throughput and acknowledgement latency against a running server with generated records'
complete -c zavro -n "__fish_zavro_needs_command" -f -a "keys" -d 'Manage API keys: add, list, revoke'
complete -c zavro -n "__fish_zavro_needs_command" -f -a "audit" -d 'Read and check the audit trail'
complete -c zavro -n "__fish_zavro_needs_command" -f -a "server-key" -d 'Print the server\'s CURVE public key, which clients pin to know they reach this server; rotate it'
complete -c zavro -n "__fish_zavro_needs_command" -f -a "completions" -d 'Print a shell completion script, e.g. `zavro completions bash > /etc/bash_completion.d/zavro`'
complete -c zavro -n "__fish_zavro_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c zavro -n "__fish_zavro_using_subcommand serve" -l output -d 'Append accepted records (one JSON line each) to this file instead of stdout' -r -F
complete -c zavro -n "__fish_zavro_using_subcommand serve" -l schema -d 'Accept only data whose writer schema resolves against this reader schema (Avro\'s resolution rules), and log and store it in this schema\'s shape. Repeat it, or give a directory of .avsc files, for several; without it, any schema zavro can decode safely is accepted' -r -F
complete -c zavro -n "__fish_zavro_using_subcommand serve" -l max-message-size -d 'Disconnect a peer, unanswered, once its request passes this many bytes (its frames\' sizes plus 128 per frame)' -r
complete -c zavro -n "__fish_zavro_using_subcommand serve" -l max-skew -d 'Refuse requests whose timestamp is more than this many seconds from the server\'s clock' -r
complete -c zavro -n "__fish_zavro_using_subcommand serve" -l max-connections -d 'Most connections held at once [default: 1024, fewer if the open-file limit leaves less room]; further ones wait in the kernel\'s queue until one closes. Each takes an open file: the server refuses to start when N connections and 64 files of its own do not fit under the hard open-file limit, and caps its soft limit at the files it holds plus N' -r
complete -c zavro -n "__fish_zavro_using_subcommand serve" -l name -d 'The name written into every audit row this server writes (`server` in `audit query`), to tell apart the rows of servers sharing a store [default: this machine\'s host name]. Printable, at most 64 characters' -r
complete -c zavro -n "__fish_zavro_using_subcommand serve" -l db -d 'SQLite store with keys and audit trail [default: the zavro folder of the user\'s data directory, e.g. ~/.local/share/zavro/zavro.db]' -r -F
complete -c zavro -n "__fish_zavro_using_subcommand serve" -l plaintext -d 'Accept unencrypted connections (ZeroMQ\'s NULL mechanism) instead of CURVE, for benchmarks and clients without CURVE: anyone on the network path can read the records, and connections are not checked at the handshake (requests and replies are still signed). The start-up line and every audit row say plaintext'
complete -c zavro -n "__fish_zavro_using_subcommand serve" -s h -l help -d 'Print help'
complete -c zavro -n "__fish_zavro_using_subcommand send" -l key -d 'API key id [default: the profile\'s key]. The secret comes from --secret-file, ZAVRO_SECRET, the profile, or a prompt on the terminal' -r
complete -c zavro -n "__fish_zavro_using_subcommand send" -l secret-file -d 'Read the secret from this file (first line) instead of ZAVRO_SECRET, the profile or the terminal' -r -F
complete -c zavro -n "__fish_zavro_using_subcommand send" -l profile -d 'Take key, secret and endpoint from this profile of the credentials file [default: the `default` profile, if there is one]; a flag or environment variable still wins over the profile' -r
complete -c zavro -n "__fish_zavro_using_subcommand send" -l timeout -d 'Give up when the server has not answered a request within this many seconds' -r
complete -c zavro -n "__fish_zavro_using_subcommand send" -l retries -d 'Resend a request this many times when its reply does not come in time (same request, same nonce: the server recognises a retry of what it already stored)' -r
complete -c zavro -n "__fish_zavro_using_subcommand send" -l batch -d 'Most records per request' -r
complete -c zavro -n "__fish_zavro_using_subcommand send" -l batch-bytes -d 'Most bytes of encoded records per request (a single larger record still goes alone)' -r
complete -c zavro -n "__fish_zavro_using_subcommand send" -l linger -d 'Longest a record waits for its request to fill, e.g. `250ms`, `1s`, or `0` (send what is read at once)' -r
complete -c zavro -n "__fish_zavro_using_subcommand send" -l format -d 'What stdin holds: JSON values (NDJSON), or an Avro object container file from any Avro writer, sent in batches of its blocks with its schema, codec and records unchanged (read into memory whole)' -r -f -a "json\t'JSON values separated by white space (NDJSON), or one array of records'
avro\t'An Avro object container file'"
complete -c zavro -n "__fish_zavro_using_subcommand send" -l schema -d 'Encode the JSON records with this Avro schema (.avsc) instead of zavro\'s JSON schema. Records are natural JSON (README.md, "JSON to Avro"); one that does not fit stops `send` before its request, naming the record and the field' -r -F
complete -c zavro -n "__fish_zavro_using_subcommand send" -l codec -d 'Compression of the Avro blocks sent (JSON input only; an Avro file keeps its own codec)' -r -f -a "null\t'No compression'
deflate\t'Deflate (RFC 1951)'
snappy\t'Snappy, with the CRC32 the Avro specification adds'
zstandard\t'Zstandard'"
complete -c zavro -n "__fish_zavro_using_subcommand send" -l window -d 'Requests in flight per server before waiting for replies (at most 256: far below ZeroMQ\'s high-water mark)' -r
complete -c zavro -n "__fish_zavro_using_subcommand send" -l server-key -d 'The server\'s CURVE public key, 40 characters of Z85 as `zavro server-key` prints them on the server [default: ZAVRO_SERVER_KEY, else the profile\'s server_key]. The connection is encrypted, and only the server holding that key can answer. While servers rotate their key, give two, NEW,OLD: each connection uses the one its server presents' -r
complete -c zavro -n "__fish_zavro_using_subcommand send" -l db -d 'SQLite store with keys and audit trail [default: the zavro folder of the user\'s data directory, e.g. ~/.local/share/zavro/zavro.db]' -r -F
complete -c zavro -n "__fish_zavro_using_subcommand send" -l plaintext -d 'Talk to a `zavro serve --plaintext` server without encryption: anyone on the path can read the records. Acknowledgements must still carry the server\'s signature. Overrides ZAVRO_SERVER_KEY and the profile\'s server_key'
complete -c zavro -n "__fish_zavro_using_subcommand send" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c zavro -n "__fish_zavro_using_subcommand bench" -l key -d 'API key id (resolved as for `zavro send`: --key, ZAVRO_KEY, then the profile)' -r
complete -c zavro -n "__fish_zavro_using_subcommand bench" -l secret-file -d 'Read the secret from this file (first line) instead of ZAVRO_SECRET, the profile or the terminal' -r -F
complete -c zavro -n "__fish_zavro_using_subcommand bench" -l profile -d 'Take key, secret and endpoint from this profile of the credentials file (as for `zavro send`)' -r
complete -c zavro -n "__fish_zavro_using_subcommand bench" -l count -d 'Records to send in all' -r
complete -c zavro -n "__fish_zavro_using_subcommand bench" -l record-size -d 'Size of each generated record as JSON, in bytes' -r
complete -c zavro -n "__fish_zavro_using_subcommand bench" -l batch -d 'Records per request' -r
complete -c zavro -n "__fish_zavro_using_subcommand bench" -l window -d 'Requests in flight per connection (at most 256)' -r
complete -c zavro -n "__fish_zavro_using_subcommand bench" -l connections -d 'Connections (each in its own thread) sharing the records' -r
complete -c zavro -n "__fish_zavro_using_subcommand bench" -l timeout -d 'Give up when a reply takes longer than this many seconds' -r
complete -c zavro -n "__fish_zavro_using_subcommand bench" -l server-key -d 'The server\'s CURVE public key, 40 characters of Z85 as `zavro server-key` prints them on the server [default: ZAVRO_SERVER_KEY, else the profile\'s server_key]. The connection is encrypted, and only the server holding that key can answer. While servers rotate their key, give two, NEW,OLD: each connection uses the one its server presents' -r
complete -c zavro -n "__fish_zavro_using_subcommand bench" -l db -d 'SQLite store with keys and audit trail [default: the zavro folder of the user\'s data directory, e.g. ~/.local/share/zavro/zavro.db]' -r -F
complete -c zavro -n "__fish_zavro_using_subcommand bench" -l json -d 'Print one JSON object instead of text'
complete -c zavro -n "__fish_zavro_using_subcommand bench" -l plaintext -d 'Talk to a `zavro serve --plaintext` server without encryption: anyone on the path can read the records. Acknowledgements must still carry the server\'s signature. Overrides ZAVRO_SERVER_KEY and the profile\'s server_key'
complete -c zavro -n "__fish_zavro_using_subcommand bench" -s h -l help -d 'Print help'
complete -c zavro -n "__fish_zavro_using_subcommand keys; and not __fish_seen_subcommand_from add list revoke help" -l db -d 'SQLite store with keys and audit trail [default: the zavro folder of the user\'s data directory, e.g. ~/.local/share/zavro/zavro.db]' -r -F
complete -c zavro -n "__fish_zavro_using_subcommand keys; and not __fish_seen_subcommand_from add list revoke help" -s h -l help -d 'Print help'
complete -c zavro -n "__fish_zavro_using_subcommand keys; and not __fish_seen_subcommand_from add list revoke help" -f -a "add" -d 'Create a key. Prints the key id and a new random secret once; the secret is never shown again'
complete -c zavro -n "__fish_zavro_using_subcommand keys; and not __fish_seen_subcommand_from add list revoke help" -f -a "list" -d 'List keys with label, creation, revocation, expiry, last use and accepted requests and records; never secrets'
complete -c zavro -n "__fish_zavro_using_subcommand keys; and not __fish_seen_subcommand_from add list revoke help" -f -a "revoke" -d 'Revoke a key: a running server refuses it from its next request on'
complete -c zavro -n "__fish_zavro_using_subcommand keys; and not __fish_seen_subcommand_from add list revoke help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c zavro -n "__fish_zavro_using_subcommand keys; and __fish_seen_subcommand_from add" -l label -d 'A note to tell keys apart (who or what uses it)' -r
complete -c zavro -n "__fish_zavro_using_subcommand keys; and __fish_seen_subcommand_from add" -l save-profile -d 'Save the new key, its secret and this store\'s server public key (which `serve` presents) as this profile of the credentials file (created mode 0600) instead of printing the secret [NAME: default]' -r
complete -c zavro -n "__fish_zavro_using_subcommand keys; and __fish_seen_subcommand_from add" -l endpoint -d 'The endpoint to save in the profile, used by `send` when no ENDPOINT is given' -r
complete -c zavro -n "__fish_zavro_using_subcommand keys; and __fish_seen_subcommand_from add" -l expires -d 'Make the key stop working after this long (30d, 12h) or at this RFC 3339 time; the server then refuses it as `expired_key`' -r
complete -c zavro -n "__fish_zavro_using_subcommand keys; and __fish_seen_subcommand_from add" -l db -d 'SQLite store with keys and audit trail [default: the zavro folder of the user\'s data directory, e.g. ~/.local/share/zavro/zavro.db]' -r -F
complete -c zavro -n "__fish_zavro_using_subcommand keys; and __fish_seen_subcommand_from add" -l json -d 'Print {"key": …, "secret": …} as JSON'
complete -c zavro -n "__fish_zavro_using_subcommand keys; and __fish_seen_subcommand_from add" -l secret-stdin -d 'Import an existing secret from stdin (first line) instead of generating one'
complete -c zavro -n "__fish_zavro_using_subcommand keys; and __fish_seen_subcommand_from add" -l secret-prompt -d 'Import an existing secret typed at a prompt on the terminal (not echoed)'
complete -c zavro -n "__fish_zavro_using_subcommand keys; and __fish_seen_subcommand_from add" -l force -d 'Replace a profile of the same name'
complete -c zavro -n "__fish_zavro_using_subcommand keys; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c zavro -n "__fish_zavro_using_subcommand keys; and __fish_seen_subcommand_from list" -l db -d 'SQLite store with keys and audit trail [default: the zavro folder of the user\'s data directory, e.g. ~/.local/share/zavro/zavro.db]' -r -F
complete -c zavro -n "__fish_zavro_using_subcommand keys; and __fish_seen_subcommand_from list" -l json -d 'One JSON object per line instead of a table'
complete -c zavro -n "__fish_zavro_using_subcommand keys; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c zavro -n "__fish_zavro_using_subcommand keys; and __fish_seen_subcommand_from revoke" -l db -d 'SQLite store with keys and audit trail [default: the zavro folder of the user\'s data directory, e.g. ~/.local/share/zavro/zavro.db]' -r -F
complete -c zavro -n "__fish_zavro_using_subcommand keys; and __fish_seen_subcommand_from revoke" -s h -l help -d 'Print help'
complete -c zavro -n "__fish_zavro_using_subcommand keys; and __fish_seen_subcommand_from help" -f -a "add" -d 'Create a key. Prints the key id and a new random secret once; the secret is never shown again'
complete -c zavro -n "__fish_zavro_using_subcommand keys; and __fish_seen_subcommand_from help" -f -a "list" -d 'List keys with label, creation, revocation, expiry, last use and accepted requests and records; never secrets'
complete -c zavro -n "__fish_zavro_using_subcommand keys; and __fish_seen_subcommand_from help" -f -a "revoke" -d 'Revoke a key: a running server refuses it from its next request on'
complete -c zavro -n "__fish_zavro_using_subcommand keys; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and not __fish_seen_subcommand_from query verify head stats export prune schemas help" -l db -d 'SQLite store with keys and audit trail [default: the zavro folder of the user\'s data directory, e.g. ~/.local/share/zavro/zavro.db]' -r -F
complete -c zavro -n "__fish_zavro_using_subcommand audit; and not __fish_seen_subcommand_from query verify head stats export prune schemas help" -s h -l help -d 'Print help'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and not __fish_seen_subcommand_from query verify head stats export prune schemas help" -f -a "query" -d 'Show audit rows, oldest first: every request the server answered and every key change'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and not __fish_seen_subcommand_from query verify head stats export prune schemas help" -f -a "verify" -d 'Check the audit hash chain; name the first row that was edited, deleted, inserted or moved (exit 6)'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and not __fish_seen_subcommand_from query verify head stats export prune schemas help" -f -a "head" -d 'Print the newest audit row as ROW:HASH, to record elsewhere for `audit verify --against`'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and not __fish_seen_subcommand_from query verify head stats export prune schemas help" -f -a "stats" -d 'Count accepted and rejected requests and records per key and per reason over a period'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and not __fish_seen_subcommand_from query verify head stats export prune schemas help" -f -a "export" -d 'Write audit rows with their stored records as NDJSON (the fields of `audit query --json --payload`)'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and not __fish_seen_subcommand_from query verify head stats export prune schemas help" -f -a "prune" -d 'Remove old audit rows, their payloads and nonces; the rest of the chain still verifies'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and not __fish_seen_subcommand_from query verify head stats export prune schemas help" -f -a "schemas" -d 'List the Avro writer schemas requests used, by fingerprint, or print one of them'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and not __fish_seen_subcommand_from query verify head stats export prune schemas help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from query" -l key -d 'Only rows for this key id' -r
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from query" -l status -d 'Only accepted or only rejected rows' -r -f -a "accepted\t'Requests that were stored, and key changes'
rejected\t'Requests that were refused'"
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from query" -l peer -d 'Only rows from this peer address (as printed in the PEER column; `local` for commands on this machine)' -r
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from query" -l reason -d 'Only rows with this reason: a reply code such as bad_signature, or duplicate for recognised retries' -r
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from query" -l schema -d 'Only requests whose data used this Avro writer schema: its fingerprint (SHA-256 of the Parsing Canonical Form, as `zavro audit schemas` lists; a unique prefix is enough) or an .avsc file' -r
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from query" -l since -d 'Only rows at or after this time: RFC 3339 (2026-11-28T03:00:00Z) or that long ago (15m, 2h, 7d)' -r
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from query" -l until -d 'Only rows before this time: RFC 3339 or that long ago (15m, 2h, 7d)' -r
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from query" -l limit -d 'Only the N most recent matching rows (with --follow, default 10)' -r
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from query" -l format -d 'Output format: an aligned table, one JSON object per line, or CSV with a header row (a text field that begins with =, +, -, @, a tab or a carriage return gets a single quote in front, so a spreadsheet does not run it as a formula)' -r -f -a "table\t'Aligned columns for people'
json\t'One JSON object per line (the fields are listed in README.md)'
csv\t'Comma-separated values with a header row (RFC 4180 quoting; text that would start a spreadsheet formula gets a single quote in front)'"
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from query" -l db -d 'SQLite store with keys and audit trail [default: the zavro folder of the user\'s data directory, e.g. ~/.local/share/zavro/zavro.db]' -r -F
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from query" -l json -d 'Shorthand for --format json'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from query" -l payload -d 'Include the stored JSON records of accepted requests (implies --format json)'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from query" -s f -l follow -d 'Keep running and print new matching rows as they are committed, until interrupted (Ctrl-C exits 0)'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from query" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from verify" -l against -d 'A head recorded earlier with `zavro audit head`; the chain must still contain it' -r
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from verify" -l db -d 'SQLite store with keys and audit trail [default: the zavro folder of the user\'s data directory, e.g. ~/.local/share/zavro/zavro.db]' -r -F
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from verify" -s h -l help -d 'Print help'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from head" -l db -d 'SQLite store with keys and audit trail [default: the zavro folder of the user\'s data directory, e.g. ~/.local/share/zavro/zavro.db]' -r -F
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from head" -s h -l help -d 'Print help'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from stats" -l since -d 'Only rows at or after this time: RFC 3339 (2026-11-28T03:00:00Z) or that long ago (15m, 2h, 7d)' -r
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from stats" -l until -d 'Only rows before this time: RFC 3339 or that long ago (15m, 2h, 7d)' -r
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from stats" -l db -d 'SQLite store with keys and audit trail [default: the zavro folder of the user\'s data directory, e.g. ~/.local/share/zavro/zavro.db]' -r -F
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from stats" -l json -d 'Print one JSON object instead of tables'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from stats" -s h -l help -d 'Print help'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from export" -l since -d 'Only rows at or after this time: RFC 3339 (2026-11-28T03:00:00Z) or that long ago (15m, 2h, 7d)' -r
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from export" -l until -d 'Only rows before this time: RFC 3339 or that long ago (15m, 2h, 7d)' -r
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from export" -l db -d 'SQLite store with keys and audit trail [default: the zavro folder of the user\'s data directory, e.g. ~/.local/share/zavro/zavro.db]' -r -F
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from export" -s h -l help -d 'Print help'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from prune" -l before -d 'Remove the rows written before this time: RFC 3339 or that long ago (90d). It must be at least --max-skew seconds ago, so nothing inside the replay window is removed' -r
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from prune" -l max-skew -d 'The largest --max-skew any server using this store runs with: rows newer than this many seconds (at least 300) are never pruned, since their nonces still refuse replays' -r
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from prune" -l db -d 'SQLite store with keys and audit trail [default: the zavro folder of the user\'s data directory, e.g. ~/.local/share/zavro/zavro.db]' -r -F
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from prune" -l dry-run -d 'Print what would be removed, and remove nothing'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from prune" -s h -l help -d 'Print help'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from schemas" -l db -d 'SQLite store with keys and audit trail [default: the zavro folder of the user\'s data directory, e.g. ~/.local/share/zavro/zavro.db]' -r -F
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from schemas" -l json -d 'One JSON object per schema (with its canonical form and text) instead of a table'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from schemas" -s h -l help -d 'Print help'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "query" -d 'Show audit rows, oldest first: every request the server answered and every key change'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "verify" -d 'Check the audit hash chain; name the first row that was edited, deleted, inserted or moved (exit 6)'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "head" -d 'Print the newest audit row as ROW:HASH, to record elsewhere for `audit verify --against`'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "stats" -d 'Count accepted and rejected requests and records per key and per reason over a period'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "export" -d 'Write audit rows with their stored records as NDJSON (the fields of `audit query --json --payload`)'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "prune" -d 'Remove old audit rows, their payloads and nonces; the rest of the chain still verifies'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "schemas" -d 'List the Avro writer schemas requests used, by fingerprint, or print one of them'
complete -c zavro -n "__fish_zavro_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c zavro -n "__fish_zavro_using_subcommand server-key; and not __fish_seen_subcommand_from rotate help" -l db -d 'SQLite store with keys and audit trail [default: the zavro folder of the user\'s data directory, e.g. ~/.local/share/zavro/zavro.db]' -r -F
complete -c zavro -n "__fish_zavro_using_subcommand server-key; and not __fish_seen_subcommand_from rotate help" -l json -d 'Print {"current": …, "staged": … or null} as JSON: the key `serve` presents, and the one `rotate` will make current, if staged'
complete -c zavro -n "__fish_zavro_using_subcommand server-key; and not __fish_seen_subcommand_from rotate help" -s h -l help -d 'Print help'
complete -c zavro -n "__fish_zavro_using_subcommand server-key; and not __fish_seen_subcommand_from rotate help" -f -a "rotate" -d 'Make the staged key (or a new one) current and print it; servers present it once restarted'
complete -c zavro -n "__fish_zavro_using_subcommand server-key; and not __fish_seen_subcommand_from rotate help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c zavro -n "__fish_zavro_using_subcommand server-key; and __fish_seen_subcommand_from rotate" -l db -d 'SQLite store with keys and audit trail [default: the zavro folder of the user\'s data directory, e.g. ~/.local/share/zavro/zavro.db]' -r -F
complete -c zavro -n "__fish_zavro_using_subcommand server-key; and __fish_seen_subcommand_from rotate" -l stage -d 'Only make the next key and print it, without using it yet (a key already staged is kept), so that clients can be given it before the rotation'
complete -c zavro -n "__fish_zavro_using_subcommand server-key; and __fish_seen_subcommand_from rotate" -s h -l help -d 'Print help'
complete -c zavro -n "__fish_zavro_using_subcommand server-key; and __fish_seen_subcommand_from help" -f -a "rotate" -d 'Make the staged key (or a new one) current and print it; servers present it once restarted'
complete -c zavro -n "__fish_zavro_using_subcommand server-key; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c zavro -n "__fish_zavro_using_subcommand completions" -l db -d 'SQLite store with keys and audit trail [default: the zavro folder of the user\'s data directory, e.g. ~/.local/share/zavro/zavro.db]' -r -F
complete -c zavro -n "__fish_zavro_using_subcommand completions" -s h -l help -d 'Print help'
complete -c zavro -n "__fish_zavro_using_subcommand help; and not __fish_seen_subcommand_from serve send bench keys audit server-key completions help" -f -a "serve" -d 'Receive signed Avro messages, verify them, audit every request, store and log accepted records'
complete -c zavro -n "__fish_zavro_using_subcommand help; and not __fish_seen_subcommand_from serve send bench keys audit server-key completions help" -f -a "send" -d 'Read JSON records from stdin, encode them as Avro, sign and send them; wait until all are accepted'
complete -c zavro -n "__fish_zavro_using_subcommand help; and not __fish_seen_subcommand_from serve send bench keys audit server-key completions help" -f -a "bench" -d 'Measure throughput and acknowledgement latency against a running server with generated records'
complete -c zavro -n "__fish_zavro_using_subcommand help; and not __fish_seen_subcommand_from serve send bench keys audit server-key completions help" -f -a "keys" -d 'Manage API keys: add, list, revoke'
complete -c zavro -n "__fish_zavro_using_subcommand help; and not __fish_seen_subcommand_from serve send bench keys audit server-key completions help" -f -a "audit" -d 'Read and check the audit trail'
complete -c zavro -n "__fish_zavro_using_subcommand help; and not __fish_seen_subcommand_from serve send bench keys audit server-key completions help" -f -a "server-key" -d 'Print the server\'s CURVE public key, which clients pin to know they reach this server; rotate it'
complete -c zavro -n "__fish_zavro_using_subcommand help; and not __fish_seen_subcommand_from serve send bench keys audit server-key completions help" -f -a "completions" -d 'Print a shell completion script, e.g. `zavro completions bash > /etc/bash_completion.d/zavro`'
complete -c zavro -n "__fish_zavro_using_subcommand help; and not __fish_seen_subcommand_from serve send bench keys audit server-key completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c zavro -n "__fish_zavro_using_subcommand help; and __fish_seen_subcommand_from keys" -f -a "add" -d 'Create a key. Prints the key id and a new random secret once; the secret is never shown again'
complete -c zavro -n "__fish_zavro_using_subcommand help; and __fish_seen_subcommand_from keys" -f -a "list" -d 'List keys with label, creation, revocation, expiry, last use and accepted requests and records; never secrets'
complete -c zavro -n "__fish_zavro_using_subcommand help; and __fish_seen_subcommand_from keys" -f -a "revoke" -d 'Revoke a key: a running server refuses it from its next request on'
complete -c zavro -n "__fish_zavro_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "query" -d 'Show audit rows, oldest first: every request the server answered and every key change'
complete -c zavro -n "__fish_zavro_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "verify" -d 'Check the audit hash chain; name the first row that was edited, deleted, inserted or moved (exit 6)'
complete -c zavro -n "__fish_zavro_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "head" -d 'Print the newest audit row as ROW:HASH, to record elsewhere for `audit verify --against`'
complete -c zavro -n "__fish_zavro_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "stats" -d 'Count accepted and rejected requests and records per key and per reason over a period'
complete -c zavro -n "__fish_zavro_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "export" -d 'Write audit rows with their stored records as NDJSON (the fields of `audit query --json --payload`)'
complete -c zavro -n "__fish_zavro_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "prune" -d 'Remove old audit rows, their payloads and nonces; the rest of the chain still verifies'
complete -c zavro -n "__fish_zavro_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "schemas" -d 'List the Avro writer schemas requests used, by fingerprint, or print one of them'
complete -c zavro -n "__fish_zavro_using_subcommand help; and __fish_seen_subcommand_from server-key" -f -a "rotate" -d 'Make the staged key (or a new one) current and print it; servers present it once restarted'
