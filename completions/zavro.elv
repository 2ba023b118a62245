
use builtin;
use str;

set edit:completion:arg-completer[zavro] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'zavro'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'zavro'= {
            cand --db 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]'
            cand --master-key-file 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand serve 'Receive signed Avro messages, verify them, audit every request, store and log accepted records'
            cand send 'Read JSON records from stdin, encode them as Avro, sign and send them; wait until all are accepted'
            cand bench 'Measure throughput and acknowledgement latency against a running server with generated records'
            cand keys 'Manage API keys: add, list, revoke'
            cand audit 'Read and check the audit trail'
            cand server-key 'Print the server''s CURVE public key, which clients pin to know they reach this server; rotate it'
            cand store 'Seal the store''s secrets under a master key kept outside it, rotate that key, or show the state; copy a store into PostgreSQL'
            cand completions 'Print a shell completion script, e.g. `zavro completions bash > /etc/bash_completion.d/zavro`'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'zavro;serve'= {
            cand --output 'Append accepted records (one JSON line each) to this file instead of stdout'
            cand --schema 'Accept only data whose writer schema resolves against this reader schema (Avro''s resolution rules), and log and store it in this schema''s shape. Repeat it, or give a directory of .avsc files, for several; without it, any schema zavro can decode safely is accepted'
            cand --max-message-size 'Disconnect a peer, unanswered, once its request passes this many bytes (its frames'' sizes plus 128 per frame)'
            cand --max-skew 'Refuse requests whose timestamp is more than this many seconds from the server''s clock'
            cand --max-connections 'Most connections held at once [default: 1024, fewer if the open-file limit leaves less room]; further ones wait in the kernel''s queue until one closes. Each takes an open file: the server refuses to start when N connections and 64 files of its own do not fit under the hard open-file limit, and caps its soft limit at the files it holds plus N'
            cand --name 'The name written into every audit row this server writes (`server` in `audit query`), to tell apart the rows of servers sharing a store [default: this machine''s host name]. Printable, at most 64 characters'
            cand --metrics 'Serve Prometheus metrics on http://ADDRESS/metrics, with /healthz (the process answers) and /readyz (the socket is bound and the store takes writes) beside them; port 0 lets the OS pick. Unauthenticated: bind it to loopback (127.0.0.1:9464) or a private interface'
            cand --log-format 'How the log on stderr is written: `text`, one line per event for people, or `json`, one JSON object per line for log shippers (fields and events in README.md, "Logs"). Start-up errors are JSON too'
            cand --db 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]'
            cand --master-key-file 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself'
            cand --plaintext 'Accept unencrypted connections (ZeroMQ''s NULL mechanism) instead of CURVE, for benchmarks and clients without CURVE: anyone on the network path can read the records, and connections are not checked at the handshake (requests and replies are still signed). The start-up line and every audit row say plaintext'
            cand --allow-async-commit 'Serve from a PostgreSQL database that acknowledges commits before they are durable (synchronous_commit or fsync off for this role or database), which serve otherwise refuses: a crash of the database can then lose requests the server already answered `accepted`, and a client will not send them again'
            cand --check-config 'Print the settings serve would use (endpoint, store, transport and server key, limits, output, log format, name) and exit without binding: 0 when they hold, else the error and exit code serve would stop with. Reads the store (and the master key) but writes nothing'
            cand --json 'With --check-config: print the settings as one JSON object'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'zavro;send'= {
            cand --key 'API key id [default: the profile''s key]. The secret comes from --secret-file, ZAVRO_SECRET, the profile, or a prompt on the terminal'
            cand --secret-file 'Read the secret from this file (first line) instead of ZAVRO_SECRET, the profile or the terminal'
            cand --profile 'Take key, secret and endpoint from this profile of the credentials file [default: the `default` profile, if there is one]; a flag or environment variable still wins over the profile'
            cand --timeout 'Give up when the server has not answered a request within this many seconds'
            cand --retries 'Resend a request this many times when its reply does not come in time, or the server could not store it or check the key for now (`internal`, its database down, say), after a pause that doubles from 0.25 s to 4 s (same request, same nonce: the server recognises a retry of what it already stored)'
            cand --batch 'Most records per request'
            cand --batch-bytes 'Most bytes of encoded records per request (a single larger record still goes alone)'
            cand --linger 'Longest a record waits for its request to fill, e.g. `250ms`, `1s`, or `0` (send what is read at once)'
            cand --format 'What stdin holds: JSON values (NDJSON), or an Avro object container file from any Avro writer, sent in batches of its blocks with its schema, codec and records unchanged (read into memory whole)'
            cand --schema 'Encode the JSON records with this Avro schema (.avsc) instead of zavro''s JSON schema. Records are natural JSON (README.md, "JSON to Avro"); one that does not fit stops `send` before its request, naming the record and the field'
            cand --codec 'Compression of the Avro blocks sent (JSON input only; an Avro file keeps its own codec)'
            cand --window 'Requests in flight per server before waiting for replies (at most 256: far below ZeroMQ''s high-water mark)'
            cand --spool 'Store and forward through this spool directory: each request is appended to DIR and made durable (fsync) before more input is read, then sent; what the server acknowledged is recorded. Requests that waited in DIR from an earlier run go first, in order. If the server stays down, `send` exits 0 once the input is spooled and says how many requests wait; deliver them later with `--flush`. Killing `send` loses nothing spooled, and nothing is stored twice: each spooled request keeps one request id however often it is signed (PROTOCOL.md, "Request ids"). One `send` per spool at a time'
            cand --follow 'Instead of stdin, follow FILE as `tail -F` does (repeat for several files): each line a JSON record, sent as it is written, across rotation by rename and truncation, until SIGTERM or SIGINT. Needs --spool: where reading stopped is saved in the spool with each request, so a restarted `send` resumes there and no line is stored twice or lost. A file followed for the first time is read from its start; a line that is not JSON is skipped with a warning'
            cand --spool-max-size 'With --spool: most bytes the spool may hold (K, M, G suffixes are KiB, MiB, GiB) [default: 1G]. When the next request would pass it, `send` stops reading input, delivers what it can, says how many records were spooled, and exits 10: nothing read into a request is dropped unsaid'
            cand --server-key 'The server''s CURVE public key, 40 characters of Z85 as `zavro server-key` prints them on the server [default: ZAVRO_SERVER_KEY, else the profile''s server_key]. The connection is encrypted, and only the server holding that key can answer. While servers rotate their key, give two, NEW,OLD: each connection uses the one its server presents'
            cand --db 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]'
            cand --master-key-file 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself'
            cand --flush 'With --spool: read no input, deliver what waits in the spool, and exit (0 once all is acknowledged; 5 if the server cannot be reached, the requests still waiting; 12 if some were refused for good and kept aside)'
            cand --requeue-refused 'With --spool: first put the requests kept in DIR/refused back in line, at the end of the spool, with their request ids (a request already stored is answered `duplicate`, never stored twice); use it once the cause of their refusal is fixed, e.g. with --flush'
            cand --plaintext 'Talk to a `zavro serve --plaintext` server without encryption: anyone on the path can read the records. Acknowledgements must still carry the server''s signature. Overrides ZAVRO_SERVER_KEY and the profile''s server_key'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'zavro;bench'= {
            cand --key 'API key id (resolved as for `zavro send`: --key, ZAVRO_KEY, then the profile)'
            cand --secret-file 'Read the secret from this file (first line) instead of ZAVRO_SECRET, the profile or the terminal'
            cand --profile 'Take key, secret and endpoint from this profile of the credentials file (as for `zavro send`)'
            cand --count 'Records to send in all'
            cand --record-size 'Size of each generated record as JSON, in bytes'
            cand --batch 'Records per request'
            cand --window 'Requests in flight per connection (at most 256)'
            cand --connections 'Connections (each in its own thread) sharing the records'
            cand --timeout 'Give up when a reply takes longer than this many seconds'
            cand --server-key 'The server''s CURVE public key, 40 characters of Z85 as `zavro server-key` prints them on the server [default: ZAVRO_SERVER_KEY, else the profile''s server_key]. The connection is encrypted, and only the server holding that key can answer. While servers rotate their key, give two, NEW,OLD: each connection uses the one its server presents'
            cand --db 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]'
            cand --master-key-file 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself'
            cand --json 'Print one JSON object instead of text'
            cand --plaintext 'Talk to a `zavro serve --plaintext` server without encryption: anyone on the path can read the records. Acknowledgements must still carry the server''s signature. Overrides ZAVRO_SERVER_KEY and the profile''s server_key'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'zavro;keys'= {
            cand --db 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]'
            cand --master-key-file 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand add 'Create a key. Prints the key id and a new random secret once; the secret is never shown again'
            cand list 'List keys with label, creation, revocation, expiry, last use and accepted requests and records; never secrets'
            cand revoke 'Revoke a key: a running server refuses it from its next request on'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'zavro;keys;add'= {
            cand --label 'A note to tell keys apart (who or what uses it)'
            cand --save-profile 'Save the new key, its secret and this store''s server public key (which `serve` presents) as this profile of the credentials file (created mode 0600) instead of printing the secret [NAME: default]'
            cand --endpoint 'The endpoint to save in the profile, used by `send` when no ENDPOINT is given'
            cand --expires 'Make the key stop working after this long (30d, 12h) or at this RFC 3339 time; the server then refuses it as `expired_key`'
            cand --db 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]'
            cand --master-key-file 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself'
            cand --json 'Print {"key": …, "secret": …} as JSON'
            cand --secret-stdin 'Import an existing secret from stdin (first line) instead of generating one'
            cand --secret-prompt 'Import an existing secret typed at a prompt on the terminal (not echoed)'
            cand --force 'Replace a profile of the same name'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'zavro;keys;list'= {
            cand --db 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]'
            cand --master-key-file 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself'
            cand --json 'One JSON object per line instead of a table'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'zavro;keys;revoke'= {
            cand --db 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]'
            cand --master-key-file 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'zavro;keys;help'= {
            cand add 'Create a key. Prints the key id and a new random secret once; the secret is never shown again'
            cand list 'List keys with label, creation, revocation, expiry, last use and accepted requests and records; never secrets'
            cand revoke 'Revoke a key: a running server refuses it from its next request on'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'zavro;keys;help;add'= {
        }
        &'zavro;keys;help;list'= {
        }
        &'zavro;keys;help;revoke'= {
        }
        &'zavro;keys;help;help'= {
        }
        &'zavro;audit'= {
            cand --db 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]'
            cand --master-key-file 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand query 'Show audit rows, oldest first: every request the server answered and every key change'
            cand verify 'Check the audit hash chain; name the first row that was edited, deleted, inserted or moved (exit 6)'
            cand head 'Print the newest audit row as ROW:HASH, to record elsewhere for `audit verify --against`'
            cand stats 'Count accepted and rejected requests and records per key and per reason over a period'
            cand export 'Write audit rows with their stored records as NDJSON (the fields of `audit query --json --payload`)'
            cand prune 'Remove old audit rows, their payloads and nonces; the rest of the chain still verifies'
            cand schemas 'List the Avro writer schemas requests used, by fingerprint, or print one of them'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'zavro;audit;query'= {
            cand --key 'Only rows for this key id'
            cand --status 'Only accepted or only rejected rows'
            cand --peer 'Only rows from this peer address (as printed in the PEER column; `local` for commands on this machine)'
            cand --reason 'Only rows with this reason: a reply code such as bad_signature, or duplicate for recognised retries'
            cand --schema 'Only requests whose data used this Avro writer schema: its fingerprint (SHA-256 of the Parsing Canonical Form, as `zavro audit schemas` lists; a unique prefix is enough) or an .avsc file'
            cand --since 'Only rows at or after this time: RFC 3339 (2026-11-28T03:00:00Z) or that long ago (15m, 2h, 7d)'
            cand --until 'Only rows before this time: RFC 3339 or that long ago (15m, 2h, 7d)'
            cand --limit 'Only the N most recent matching rows (with --follow, default 10)'
            cand --format 'Output format: an aligned table, one JSON object per line, or CSV with a header row (a text field that begins with =, +, -, @, a tab or a carriage return gets a single quote in front, so a spreadsheet does not run it as a formula)'
            cand --db 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]'
            cand --master-key-file 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself'
            cand --json 'Shorthand for --format json'
            cand --payload 'Include the stored JSON records of accepted requests (implies --format json)'
            cand -f 'Keep running and print new matching rows as they are committed, until interrupted (Ctrl-C exits 0)'
            cand --follow 'Keep running and print new matching rows as they are committed, until interrupted (Ctrl-C exits 0)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'zavro;audit;verify'= {
            cand --against 'A head recorded earlier with `zavro audit head`; the chain must still contain it'
            cand --db 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]'
            cand --master-key-file 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'zavro;audit;head'= {
            cand --db 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]'
            cand --master-key-file 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'zavro;audit;stats'= {
            cand --since 'Only rows at or after this time: RFC 3339 (2026-11-28T03:00:00Z) or that long ago (15m, 2h, 7d)'
            cand --until 'Only rows before this time: RFC 3339 or that long ago (15m, 2h, 7d)'
            cand --db 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]'
            cand --master-key-file 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself'
            cand --json 'Print one JSON object instead of tables'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'zavro;audit;export'= {
            cand --since 'Only rows at or after this time: RFC 3339 (2026-11-28T03:00:00Z) or that long ago (15m, 2h, 7d)'
            cand --until 'Only rows before this time: RFC 3339 or that long ago (15m, 2h, 7d)'
            cand --db 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]'
            cand --master-key-file 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'zavro;audit;prune'= {
            cand --before 'Remove the rows written before this time: RFC 3339 or that long ago (90d). It must be at least twice --max-skew seconds ago, so nothing inside the replay window is removed (a request stamped up to --max-skew ahead of the server''s clock stays acceptable until --max-skew after its timestamp)'
            cand --max-skew 'The largest --max-skew any server using this store runs with (at least 300): rows newer than twice this many seconds are never pruned, since their nonces still refuse replays'
            cand --db 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]'
            cand --master-key-file 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself'
            cand --dry-run 'Print what would be removed, and remove nothing'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'zavro;audit;schemas'= {
            cand --db 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]'
            cand --master-key-file 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself'
            cand --json 'One JSON object per schema (with its canonical form and text) instead of a table'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'zavro;audit;help'= {
            cand query 'Show audit rows, oldest first: every request the server answered and every key change'
            cand verify 'Check the audit hash chain; name the first row that was edited, deleted, inserted or moved (exit 6)'
            cand head 'Print the newest audit row as ROW:HASH, to record elsewhere for `audit verify --against`'
            cand stats 'Count accepted and rejected requests and records per key and per reason over a period'
            cand export 'Write audit rows with their stored records as NDJSON (the fields of `audit query --json --payload`)'
            cand prune 'Remove old audit rows, their payloads and nonces; the rest of the chain still verifies'
            cand schemas 'List the Avro writer schemas requests used, by fingerprint, or print one of them'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'zavro;audit;help;query'= {
        }
        &'zavro;audit;help;verify'= {
        }
        &'zavro;audit;help;head'= {
        }
        &'zavro;audit;help;stats'= {
        }
        &'zavro;audit;help;export'= {
        }
        &'zavro;audit;help;prune'= {
        }
        &'zavro;audit;help;schemas'= {
        }
        &'zavro;audit;help;help'= {
        }
        &'zavro;server-key'= {
            cand --db 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]'
            cand --master-key-file 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself'
            cand --json 'Print {"current": …, "staged": … or null} as JSON: the key `serve` presents, and the one `rotate` will make current, if staged'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand rotate 'Make the staged key (or a new one) current and print it; servers present it once restarted'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'zavro;server-key;rotate'= {
            cand --db 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]'
            cand --master-key-file 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself'
            cand --stage 'Only make the next key and print it, without using it yet (a key already staged is kept), so that clients can be given it before the rotation'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'zavro;server-key;help'= {
            cand rotate 'Make the staged key (or a new one) current and print it; servers present it once restarted'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'zavro;server-key;help;rotate'= {
        }
        &'zavro;server-key;help;help'= {
        }
        &'zavro;store'= {
            cand --db 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]'
            cand --master-key-file 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand status 'Print whether the store is sealed, and the fingerprint of the master key it is sealed under'
            cand seal 'Seal every secret of the store under the master key of --master-key-file (made first with --create-key); from then on serve and keys add need that key file. A store that does not exist yet is created sealed, so no secret is ever kept in clear text in it'
            cand reseal 'Move every secret from the current master key (--master-key-file) to a new one, in one transaction'
            cand copy 'Copy a SQLite store into an empty PostgreSQL database (--db is not used): keys, server keys, schemas, the audit trail with its hash chain, and the nonces of the replay window'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'zavro;store;status'= {
            cand --db 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]'
            cand --master-key-file 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'zavro;store;seal'= {
            cand --db 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]'
            cand --master-key-file 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself'
            cand --create-key 'Make a new random master key and write it to the --master-key-file path first (mode 0600; an existing file is never overwritten)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'zavro;store;reseal'= {
            cand --new-master-key-file 'The file of the master key to seal under from now on'
            cand --db 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]'
            cand --master-key-file 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself'
            cand --create-key 'Make the new key and write it to --new-master-key-file first (mode 0600; never overwrites a file)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'zavro;store;copy'= {
            cand --max-skew 'The largest --max-skew any server using the source runs with: the nonces of requests up to this many seconds old (at least 300) are copied, so they are still refused as replays, or recognised as retries, on the copy'
            cand --db 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]'
            cand --master-key-file 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'zavro;store;help'= {
            cand status 'Print whether the store is sealed, and the fingerprint of the master key it is sealed under'
            cand seal 'Seal every secret of the store under the master key of --master-key-file (made first with --create-key); from then on serve and keys add need that key file. A store that does not exist yet is created sealed, so no secret is ever kept in clear text in it'
            cand reseal 'Move every secret from the current master key (--master-key-file) to a new one, in one transaction'
            cand copy 'Copy a SQLite store into an empty PostgreSQL database (--db is not used): keys, server keys, schemas, the audit trail with its hash chain, and the nonces of the replay window'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'zavro;store;help;status'= {
        }
        &'zavro;store;help;seal'= {
        }
        &'zavro;store;help;reseal'= {
        }
        &'zavro;store;help;copy'= {
        }
        &'zavro;store;help;help'= {
        }
        &'zavro;completions'= {
            cand --db 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]'
            cand --master-key-file 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'zavro;help'= {
            cand serve 'Receive signed Avro messages, verify them, audit every request, store and log accepted records'
            cand send 'Read JSON records from stdin, encode them as Avro, sign and send them; wait until all are accepted'
            cand bench 'Measure throughput and acknowledgement latency against a running server with generated records'
            cand keys 'Manage API keys: add, list, revoke'
            cand audit 'Read and check the audit trail'
            cand server-key 'Print the server''s CURVE public key, which clients pin to know they reach this server; rotate it'
            cand store 'Seal the store''s secrets under a master key kept outside it, rotate that key, or show the state; copy a store into PostgreSQL'
            cand completions 'Print a shell completion script, e.g. `zavro completions bash > /etc/bash_completion.d/zavro`'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'zavro;help;serve'= {
        }
        &'zavro;help;send'= {
        }
        &'zavro;help;bench'= {
        }
        &'zavro;help;keys'= {
            cand add 'Create a key. Prints the key id and a new random secret once; the secret is never shown again'
            cand list 'List keys with label, creation, revocation, expiry, last use and accepted requests and records; never secrets'
            cand revoke 'Revoke a key: a running server refuses it from its next request on'
        }
        &'zavro;help;keys;add'= {
        }
        &'zavro;help;keys;list'= {
        }
        &'zavro;help;keys;revoke'= {
        }
        &'zavro;help;audit'= {
            cand query 'Show audit rows, oldest first: every request the server answered and every key change'
            cand verify 'Check the audit hash chain; name the first row that was edited, deleted, inserted or moved (exit 6)'
            cand head 'Print the newest audit row as ROW:HASH, to record elsewhere for `audit verify --against`'
            cand stats 'Count accepted and rejected requests and records per key and per reason over a period'
            cand export 'Write audit rows with their stored records as NDJSON (the fields of `audit query --json --payload`)'
            cand prune 'Remove old audit rows, their payloads and nonces; the rest of the chain still verifies'
            cand schemas 'List the Avro writer schemas requests used, by fingerprint, or print one of them'
        }
        &'zavro;help;audit;query'= {
        }
        &'zavro;help;audit;verify'= {
        }
        &'zavro;help;audit;head'= {
        }
        &'zavro;help;audit;stats'= {
        }
        &'zavro;help;audit;export'= {
        }
        &'zavro;help;audit;prune'= {
        }
        &'zavro;help;audit;schemas'= {
        }
        &'zavro;help;server-key'= {
            cand rotate 'Make the staged key (or a new one) current and print it; servers present it once restarted'
        }
        &'zavro;help;server-key;rotate'= {
        }
        &'zavro;help;store'= {
            cand status 'Print whether the store is sealed, and the fingerprint of the master key it is sealed under'
            cand seal 'Seal every secret of the store under the master key of --master-key-file (made first with --create-key); from then on serve and keys add need that key file. A store that does not exist yet is created sealed, so no secret is ever kept in clear text in it'
            cand reseal 'Move every secret from the current master key (--master-key-file) to a new one, in one transaction'
            cand copy 'Copy a SQLite store into an empty PostgreSQL database (--db is not used): keys, server keys, schemas, the audit trail with its hash chain, and the nonces of the replay window'
        }
        &'zavro;help;store;status'= {
        }
        &'zavro;help;store;seal'= {
        }
        &'zavro;help;store;reseal'= {
        }
        &'zavro;help;store;copy'= {
        }
        &'zavro;help;completions'= {
        }
        &'zavro;help;help'= {
        }
    ]
    $completions[$command]
}
