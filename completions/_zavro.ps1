
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'zavro' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'zavro'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'zavro' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Receive signed Avro messages, verify them, audit every request, store and log accepted records')
            [CompletionResult]::new('send', 'send', [CompletionResultType]::ParameterValue, 'Read JSON records from stdin, encode them as Avro, sign and send them; wait until all are accepted')
            [CompletionResult]::new('bench', 'bench', [CompletionResultType]::ParameterValue, 'Measure throughput and acknowledgement latency against a running server with generated records')
            [CompletionResult]::new('keys', 'keys', [CompletionResultType]::ParameterValue, 'Manage API keys: add, list, revoke')
            [CompletionResult]::new('audit', 'audit', [CompletionResultType]::ParameterValue, 'Read and check the audit trail')
            [CompletionResult]::new('server-key', 'server-key', [CompletionResultType]::ParameterValue, 'Print the server''s CURVE public key, which clients pin to know they reach this server; rotate it')
            [CompletionResult]::new('store', 'store', [CompletionResultType]::ParameterValue, 'Seal the store''s secrets under a master key kept outside it, rotate that key, or show the state; copy a store into PostgreSQL')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script, e.g. `zavro completions bash > /etc/bash_completion.d/zavro`')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'zavro;serve' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Append accepted records (one JSON line each) to this file instead of stdout')
            [CompletionResult]::new('--schema', '--schema', [CompletionResultType]::ParameterName, 'Accept only data whose writer schema resolves against this reader schema (Avro''s resolution rules), and log and store it in this schema''s shape. Repeat it, or give a directory of .avsc files, for several; without it, any schema zavro can decode safely is accepted')
            [CompletionResult]::new('--max-message-size', '--max-message-size', [CompletionResultType]::ParameterName, 'Disconnect a peer, unanswered, once its request passes this many bytes (its frames'' sizes plus 128 per frame)')
            [CompletionResult]::new('--max-skew', '--max-skew', [CompletionResultType]::ParameterName, 'Refuse requests whose timestamp is more than this many seconds from the server''s clock')
            [CompletionResult]::new('--max-connections', '--max-connections', [CompletionResultType]::ParameterName, 'Most connections held at once [default: 1024, fewer if the open-file limit leaves less room]; further ones wait in the kernel''s queue until one closes. Each takes an open file: the server refuses to start when N connections and 64 files of its own do not fit under the hard open-file limit, and caps its soft limit at the files it holds plus N')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'The name written into every audit row this server writes (`server` in `audit query`), to tell apart the rows of servers sharing a store [default: this machine''s host name]. Printable, at most 64 characters')
            [CompletionResult]::new('--metrics', '--metrics', [CompletionResultType]::ParameterName, 'Serve Prometheus metrics on http://ADDRESS/metrics, with /healthz (the process answers) and /readyz (the socket is bound and the store takes writes) beside them; port 0 lets the OS pick. Unauthenticated: bind it to loopback (127.0.0.1:9464) or a private interface')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'How the log on stderr is written: `text`, one line per event for people, or `json`, one JSON object per line for log shippers (fields and events in README.md, "Logs"). Start-up errors are JSON too')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself')
            [CompletionResult]::new('--plaintext', '--plaintext', [CompletionResultType]::ParameterName, 'Accept unencrypted connections (ZeroMQ''s NULL mechanism) instead of CURVE, for benchmarks and clients without CURVE: anyone on the network path can read the records, and connections are not checked at the handshake (requests and replies are still signed). The start-up line and every audit row say plaintext')
            [CompletionResult]::new('--allow-async-commit', '--allow-async-commit', [CompletionResultType]::ParameterName, 'Serve from a PostgreSQL database that acknowledges commits before they are durable (synchronous_commit or fsync off for this role or database), which serve otherwise refuses: a crash of the database can then lose requests the server already answered `accepted`, and a client will not send them again')
            [CompletionResult]::new('--check-config', '--check-config', [CompletionResultType]::ParameterName, 'Print the settings serve would use (endpoint, store, transport and server key, limits, output, log format, name) and exit without binding: 0 when they hold, else the error and exit code serve would stop with. Reads the store (and the master key) but writes nothing')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'With --check-config: print the settings as one JSON object')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'zavro;send' {
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'API key id [default: the profile''s key]. The secret comes from --secret-file, ZAVRO_SECRET, the profile, or a prompt on the terminal')
            [CompletionResult]::new('--secret-file', '--secret-file', [CompletionResultType]::ParameterName, 'Read the secret from this file (first line) instead of ZAVRO_SECRET, the profile or the terminal')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Take key, secret and endpoint from this profile of the credentials file [default: the `default` profile, if there is one]; a flag or environment variable still wins over the profile')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up when the server has not answered a request within this many seconds')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'Resend a request this many times when its reply does not come in time, or the server could not store it or check the key for now (`internal`, its database down, say), after a pause that doubles from 0.25 s to 4 s (same request, same nonce: the server recognises a retry of what it already stored)')
            [CompletionResult]::new('--batch', '--batch', [CompletionResultType]::ParameterName, 'Most records per request')
            [CompletionResult]::new('--batch-bytes', '--batch-bytes', [CompletionResultType]::ParameterName, 'Most bytes of encoded records per request (a single larger record still goes alone)')
            [CompletionResult]::new('--linger', '--linger', [CompletionResultType]::ParameterName, 'Longest a record waits for its request to fill, e.g. `250ms`, `1s`, or `0` (send what is read at once)')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'What stdin holds: JSON values (NDJSON), or an Avro object container file from any Avro writer, sent in batches of its blocks with its schema, codec and records unchanged (read into memory whole)')
            [CompletionResult]::new('--schema', '--schema', [CompletionResultType]::ParameterName, 'Encode the JSON records with this Avro schema (.avsc) instead of zavro''s JSON schema. Records are natural JSON (README.md, "JSON to Avro"); one that does not fit stops `send` before its request, naming the record and the field')
            [CompletionResult]::new('--codec', '--codec', [CompletionResultType]::ParameterName, 'Compression of the Avro blocks sent (JSON input only; an Avro file keeps its own codec)')
            [CompletionResult]::new('--window', '--window', [CompletionResultType]::ParameterName, 'Requests in flight per server before waiting for replies (at most 256: far below ZeroMQ''s high-water mark)')
            [CompletionResult]::new('--spool', '--spool', [CompletionResultType]::ParameterName, 'Store and forward through this spool directory: each request is appended to DIR and made durable (fsync) before more input is read, then sent; what the server acknowledged is recorded. Requests that waited in DIR from an earlier run go first, in order. If the server stays down, `send` exits 0 once the input is spooled and says how many requests wait; deliver them later with `--flush`. Killing `send` loses nothing spooled, and nothing is stored twice: each spooled request keeps one request id however often it is signed (PROTOCOL.md, "Request ids"). One `send` per spool at a time')
            [CompletionResult]::new('--follow', '--follow', [CompletionResultType]::ParameterName, 'Instead of stdin, follow FILE as `tail -F` does (repeat for several files): each line a JSON record, sent as it is written, across rotation by rename and truncation, until SIGTERM or SIGINT. Needs --spool: where reading stopped is saved in the spool with each request, so a restarted `send` resumes there and no line is stored twice or lost. A file followed for the first time is read from its start; a line that is not JSON is skipped with a warning')
            [CompletionResult]::new('--spool-max-size', '--spool-max-size', [CompletionResultType]::ParameterName, 'With --spool: most bytes the spool may hold (K, M, G suffixes are KiB, MiB, GiB) [default: 1G]. When the next request would pass it, `send` stops reading input, delivers what it can, says how many records were spooled, and exits 10: nothing read into a request is dropped unsaid')
            [CompletionResult]::new('--server-key', '--server-key', [CompletionResultType]::ParameterName, 'The server''s CURVE public key, 40 characters of Z85 as `zavro server-key` prints them on the server [default: ZAVRO_SERVER_KEY, else the profile''s server_key]. The connection is encrypted, and only the server holding that key can answer. While servers rotate their key, give two, NEW,OLD: each connection uses the one its server presents')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself')
            [CompletionResult]::new('--flush', '--flush', [CompletionResultType]::ParameterName, 'With --spool: read no input, deliver what waits in the spool, and exit (0 once all is acknowledged; 5 if the server cannot be reached, the requests still waiting; 12 if some were refused for good and kept aside)')
            [CompletionResult]::new('--requeue-refused', '--requeue-refused', [CompletionResultType]::ParameterName, 'With --spool: first put the requests kept in DIR/refused back in line, at the end of the spool, with their request ids (a request already stored is answered `duplicate`, never stored twice); use it once the cause of their refusal is fixed, e.g. with --flush')
            [CompletionResult]::new('--plaintext', '--plaintext', [CompletionResultType]::ParameterName, 'Talk to a `zavro serve --plaintext` server without encryption: anyone on the path can read the records. Acknowledgements must still carry the server''s signature. Overrides ZAVRO_SERVER_KEY and the profile''s server_key')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'zavro;bench' {
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'API key id (resolved as for `zavro send`: --key, ZAVRO_KEY, then the profile)')
            [CompletionResult]::new('--secret-file', '--secret-file', [CompletionResultType]::ParameterName, 'Read the secret from this file (first line) instead of ZAVRO_SECRET, the profile or the terminal')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Take key, secret and endpoint from this profile of the credentials file (as for `zavro send`)')
            [CompletionResult]::new('--count', '--count', [CompletionResultType]::ParameterName, 'Records to send in all')
            [CompletionResult]::new('--record-size', '--record-size', [CompletionResultType]::ParameterName, 'Size of each generated record as JSON, in bytes')
            [CompletionResult]::new('--batch', '--batch', [CompletionResultType]::ParameterName, 'Records per request')
            [CompletionResult]::new('--window', '--window', [CompletionResultType]::ParameterName, 'Requests in flight per connection (at most 256)')
            [CompletionResult]::new('--connections', '--connections', [CompletionResultType]::ParameterName, 'Connections (each in its own thread) sharing the records')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up when a reply takes longer than this many seconds')
            [CompletionResult]::new('--server-key', '--server-key', [CompletionResultType]::ParameterName, 'The server''s CURVE public key, 40 characters of Z85 as `zavro server-key` prints them on the server [default: ZAVRO_SERVER_KEY, else the profile''s server_key]. The connection is encrypted, and only the server holding that key can answer. While servers rotate their key, give two, NEW,OLD: each connection uses the one its server presents')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object instead of text')
            [CompletionResult]::new('--plaintext', '--plaintext', [CompletionResultType]::ParameterName, 'Talk to a `zavro serve --plaintext` server without encryption: anyone on the path can read the records. Acknowledgements must still carry the server''s signature. Overrides ZAVRO_SERVER_KEY and the profile''s server_key')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'zavro;keys' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Create a key. Prints the key id and a new random secret once; the secret is never shown again')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List keys with label, creation, revocation, expiry, last use and accepted requests and records; never secrets')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke a key: a running server refuses it from its next request on')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'zavro;keys;add' {
            [CompletionResult]::new('--label', '--label', [CompletionResultType]::ParameterName, 'A note to tell keys apart (who or what uses it)')
            [CompletionResult]::new('--save-profile', '--save-profile', [CompletionResultType]::ParameterName, 'Save the new key, its secret and this store''s server public key (which `serve` presents) as this profile of the credentials file (created mode 0600) instead of printing the secret [NAME: default]')
            [CompletionResult]::new('--endpoint', '--endpoint', [CompletionResultType]::ParameterName, 'The endpoint to save in the profile, used by `send` when no ENDPOINT is given')
            [CompletionResult]::new('--expires', '--expires', [CompletionResultType]::ParameterName, 'Make the key stop working after this long (30d, 12h) or at this RFC 3339 time; the server then refuses it as `expired_key`')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print {"key": …, "secret": …} as JSON')
            [CompletionResult]::new('--secret-stdin', '--secret-stdin', [CompletionResultType]::ParameterName, 'Import an existing secret from stdin (first line) instead of generating one')
            [CompletionResult]::new('--secret-prompt', '--secret-prompt', [CompletionResultType]::ParameterName, 'Import an existing secret typed at a prompt on the terminal (not echoed)')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Replace a profile of the same name')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'zavro;keys;list' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'One JSON object per line instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'zavro;keys;revoke' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'zavro;keys;help' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Create a key. Prints the key id and a new random secret once; the secret is never shown again')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List keys with label, creation, revocation, expiry, last use and accepted requests and records; never secrets')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke a key: a running server refuses it from its next request on')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'zavro;keys;help;add' {
            break
        }
        'zavro;keys;help;list' {
            break
        }
        'zavro;keys;help;revoke' {
            break
        }
        'zavro;keys;help;help' {
            break
        }
        'zavro;audit' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('query', 'query', [CompletionResultType]::ParameterValue, 'Show audit rows, oldest first: every request the server answered and every key change')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Check the audit hash chain; name the first row that was edited, deleted, inserted or moved (exit 6)')
            [CompletionResult]::new('head', 'head', [CompletionResultType]::ParameterValue, 'Print the newest audit row as ROW:HASH, to record elsewhere for `audit verify --against`')
            [CompletionResult]::new('stats', 'stats', [CompletionResultType]::ParameterValue, 'Count accepted and rejected requests and records per key and per reason over a period')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Write audit rows with their stored records as NDJSON (the fields of `audit query --json --payload`)')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Remove old audit rows, their payloads and nonces; the rest of the chain still verifies')
            [CompletionResult]::new('schemas', 'schemas', [CompletionResultType]::ParameterValue, 'List the Avro writer schemas requests used, by fingerprint, or print one of them')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'zavro;audit;query' {
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'Only rows for this key id')
            [CompletionResult]::new('--status', '--status', [CompletionResultType]::ParameterName, 'Only accepted or only rejected rows')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'Only rows from this peer address (as printed in the PEER column; `local` for commands on this machine)')
            [CompletionResult]::new('--reason', '--reason', [CompletionResultType]::ParameterName, 'Only rows with this reason: a reply code such as bad_signature, or duplicate for recognised retries')
            [CompletionResult]::new('--schema', '--schema', [CompletionResultType]::ParameterName, 'Only requests whose data used this Avro writer schema: its fingerprint (SHA-256 of the Parsing Canonical Form, as `zavro audit schemas` lists; a unique prefix is enough) or an .avsc file')
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only rows at or after this time: RFC 3339 (2026-11-28T03:00:00Z) or that long ago (15m, 2h, 7d)')
            [CompletionResult]::new('--until', '--until', [CompletionResultType]::ParameterName, 'Only rows before this time: RFC 3339 or that long ago (15m, 2h, 7d)')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'Only the N most recent matching rows (with --follow, default 10)')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format: an aligned table, one JSON object per line, or CSV with a header row (a text field that begins with =, +, -, @, a tab or a carriage return gets a single quote in front, so a spreadsheet does not run it as a formula)')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Shorthand for --format json')
            [CompletionResult]::new('--payload', '--payload', [CompletionResultType]::ParameterName, 'Include the stored JSON records of accepted requests (implies --format json)')
            [CompletionResult]::new('-f', '-f', [CompletionResultType]::ParameterName, 'Keep running and print new matching rows as they are committed, until interrupted (Ctrl-C exits 0)')
            [CompletionResult]::new('--follow', '--follow', [CompletionResultType]::ParameterName, 'Keep running and print new matching rows as they are committed, until interrupted (Ctrl-C exits 0)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'zavro;audit;verify' {
            [CompletionResult]::new('--against', '--against', [CompletionResultType]::ParameterName, 'A head recorded earlier with `zavro audit head`; the chain must still contain it')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'zavro;audit;head' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'zavro;audit;stats' {
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only rows at or after this time: RFC 3339 (2026-11-28T03:00:00Z) or that long ago (15m, 2h, 7d)')
            [CompletionResult]::new('--until', '--until', [CompletionResultType]::ParameterName, 'Only rows before this time: RFC 3339 or that long ago (15m, 2h, 7d)')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object instead of tables')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'zavro;audit;export' {
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only rows at or after this time: RFC 3339 (2026-11-28T03:00:00Z) or that long ago (15m, 2h, 7d)')
            [CompletionResult]::new('--until', '--until', [CompletionResultType]::ParameterName, 'Only rows before this time: RFC 3339 or that long ago (15m, 2h, 7d)')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'zavro;audit;prune' {
            [CompletionResult]::new('--before', '--before', [CompletionResultType]::ParameterName, 'Remove the rows written before this time: RFC 3339 or that long ago (90d). It must be at least twice --max-skew seconds ago, so nothing inside the replay window is removed (a request stamped up to --max-skew ahead of the server''s clock stays acceptable until --max-skew after its timestamp)')
            [CompletionResult]::new('--max-skew', '--max-skew', [CompletionResultType]::ParameterName, 'The largest --max-skew any server using this store runs with (at least 300): rows newer than twice this many seconds are never pruned, since their nonces still refuse replays')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Print what would be removed, and remove nothing')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'zavro;audit;schemas' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'One JSON object per schema (with its canonical form and text) instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'zavro;audit;help' {
            [CompletionResult]::new('query', 'query', [CompletionResultType]::ParameterValue, 'Show audit rows, oldest first: every request the server answered and every key change')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Check the audit hash chain; name the first row that was edited, deleted, inserted or moved (exit 6)')
            [CompletionResult]::new('head', 'head', [CompletionResultType]::ParameterValue, 'Print the newest audit row as ROW:HASH, to record elsewhere for `audit verify --against`')
            [CompletionResult]::new('stats', 'stats', [CompletionResultType]::ParameterValue, 'Count accepted and rejected requests and records per key and per reason over a period')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Write audit rows with their stored records as NDJSON (the fields of `audit query --json --payload`)')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Remove old audit rows, their payloads and nonces; the rest of the chain still verifies')
            [CompletionResult]::new('schemas', 'schemas', [CompletionResultType]::ParameterValue, 'List the Avro writer schemas requests used, by fingerprint, or print one of them')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'zavro;audit;help;query' {
            break
        }
        'zavro;audit;help;verify' {
            break
        }
        'zavro;audit;help;head' {
            break
        }
        'zavro;audit;help;stats' {
            break
        }
        'zavro;audit;help;export' {
            break
        }
        'zavro;audit;help;prune' {
            break
        }
        'zavro;audit;help;schemas' {
            break
        }
        'zavro;audit;help;help' {
            break
        }
        'zavro;server-key' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print {"current": …, "staged": … or null} as JSON: the key `serve` presents, and the one `rotate` will make current, if staged')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('rotate', 'rotate', [CompletionResultType]::ParameterValue, 'Make the staged key (or a new one) current and print it; servers present it once restarted')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'zavro;server-key;rotate' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself')
            [CompletionResult]::new('--stage', '--stage', [CompletionResultType]::ParameterName, 'Only make the next key and print it, without using it yet (a key already staged is kept), so that clients can be given it before the rotation')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'zavro;server-key;help' {
            [CompletionResult]::new('rotate', 'rotate', [CompletionResultType]::ParameterValue, 'Make the staged key (or a new one) current and print it; servers present it once restarted')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'zavro;server-key;help;rotate' {
            break
        }
        'zavro;server-key;help;help' {
            break
        }
        'zavro;store' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Print whether the store is sealed, and the fingerprint of the master key it is sealed under')
            [CompletionResult]::new('seal', 'seal', [CompletionResultType]::ParameterValue, 'Seal every secret of the store under the master key of --master-key-file (made first with --create-key); from then on serve and keys add need that key file. A store that does not exist yet is created sealed, so no secret is ever kept in clear text in it')
            [CompletionResult]::new('reseal', 'reseal', [CompletionResultType]::ParameterValue, 'Move every secret from the current master key (--master-key-file) to a new one, in one transaction')
            [CompletionResult]::new('copy', 'copy', [CompletionResultType]::ParameterValue, 'Copy a SQLite store into an empty PostgreSQL database (--db is not used): keys, server keys, schemas, the audit trail with its hash chain, and the nonces of the replay window')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'zavro;store;status' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'zavro;store;seal' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself')
            [CompletionResult]::new('--create-key', '--create-key', [CompletionResultType]::ParameterName, 'Make a new random master key and write it to the --master-key-file path first (mode 0600; an existing file is never overwritten)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'zavro;store;reseal' {
            [CompletionResult]::new('--new-master-key-file', '--new-master-key-file', [CompletionResultType]::ParameterName, 'The file of the master key to seal under from now on')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself')
            [CompletionResult]::new('--create-key', '--create-key', [CompletionResultType]::ParameterName, 'Make the new key and write it to --new-master-key-file first (mode 0600; never overwrites a file)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'zavro;store;copy' {
            [CompletionResult]::new('--max-skew', '--max-skew', [CompletionResultType]::ParameterName, 'The largest --max-skew any server using the source runs with: the nonces of requests up to this many seconds old (at least 300) are copied, so they are still refused as replays, or recognised as retries, on the copy')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'zavro;store;help' {
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Print whether the store is sealed, and the fingerprint of the master key it is sealed under')
            [CompletionResult]::new('seal', 'seal', [CompletionResultType]::ParameterValue, 'Seal every secret of the store under the master key of --master-key-file (made first with --create-key); from then on serve and keys add need that key file. A store that does not exist yet is created sealed, so no secret is ever kept in clear text in it')
            [CompletionResult]::new('reseal', 'reseal', [CompletionResultType]::ParameterValue, 'Move every secret from the current master key (--master-key-file) to a new one, in one transaction')
            [CompletionResult]::new('copy', 'copy', [CompletionResultType]::ParameterValue, 'Copy a SQLite store into an empty PostgreSQL database (--db is not used): keys, server keys, schemas, the audit trail with its hash chain, and the nonces of the replay window')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'zavro;store;help;status' {
            break
        }
        'zavro;store;help;seal' {
            break
        }
        'zavro;store;help;reseal' {
            break
        }
        'zavro;store;help;copy' {
            break
        }
        'zavro;store;help;help' {
            break
        }
        'zavro;completions' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the user''s data directory, e.g. ~/.local/share/zavro/zavro.db]')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed), for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair), store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if there is one]. The variable names the file; the key is never given itself')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'zavro;help' {
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Receive signed Avro messages, verify them, audit every request, store and log accepted records')
            [CompletionResult]::new('send', 'send', [CompletionResultType]::ParameterValue, 'Read JSON records from stdin, encode them as Avro, sign and send them; wait until all are accepted')
            [CompletionResult]::new('bench', 'bench', [CompletionResultType]::ParameterValue, 'Measure throughput and acknowledgement latency against a running server with generated records')
            [CompletionResult]::new('keys', 'keys', [CompletionResultType]::ParameterValue, 'Manage API keys: add, list, revoke')
            [CompletionResult]::new('audit', 'audit', [CompletionResultType]::ParameterValue, 'Read and check the audit trail')
            [CompletionResult]::new('server-key', 'server-key', [CompletionResultType]::ParameterValue, 'Print the server''s CURVE public key, which clients pin to know they reach this server; rotate it')
            [CompletionResult]::new('store', 'store', [CompletionResultType]::ParameterValue, 'Seal the store''s secrets under a master key kept outside it, rotate that key, or show the state; copy a store into PostgreSQL')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script, e.g. `zavro completions bash > /etc/bash_completion.d/zavro`')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'zavro;help;serve' {
            break
        }
        'zavro;help;send' {
            break
        }
        'zavro;help;bench' {
            break
        }
        'zavro;help;keys' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Create a key. Prints the key id and a new random secret once; the secret is never shown again')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List keys with label, creation, revocation, expiry, last use and accepted requests and records; never secrets')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke a key: a running server refuses it from its next request on')
            break
        }
        'zavro;help;keys;add' {
            break
        }
        'zavro;help;keys;list' {
            break
        }
        'zavro;help;keys;revoke' {
            break
        }
        'zavro;help;audit' {
            [CompletionResult]::new('query', 'query', [CompletionResultType]::ParameterValue, 'Show audit rows, oldest first: every request the server answered and every key change')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Check the audit hash chain; name the first row that was edited, deleted, inserted or moved (exit 6)')
            [CompletionResult]::new('head', 'head', [CompletionResultType]::ParameterValue, 'Print the newest audit row as ROW:HASH, to record elsewhere for `audit verify --against`')
            [CompletionResult]::new('stats', 'stats', [CompletionResultType]::ParameterValue, 'Count accepted and rejected requests and records per key and per reason over a period')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Write audit rows with their stored records as NDJSON (the fields of `audit query --json --payload`)')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Remove old audit rows, their payloads and nonces; the rest of the chain still verifies')
            [CompletionResult]::new('schemas', 'schemas', [CompletionResultType]::ParameterValue, 'List the Avro writer schemas requests used, by fingerprint, or print one of them')
            break
        }
        'zavro;help;audit;query' {
            break
        }
        'zavro;help;audit;verify' {
            break
        }
        'zavro;help;audit;head' {
            break
        }
        'zavro;help;audit;stats' {
            break
        }
        'zavro;help;audit;export' {
            break
        }
        'zavro;help;audit;prune' {
            break
        }
        'zavro;help;audit;schemas' {
            break
        }
        'zavro;help;server-key' {
            [CompletionResult]::new('rotate', 'rotate', [CompletionResultType]::ParameterValue, 'Make the staged key (or a new one) current and print it; servers present it once restarted')
            break
        }
        'zavro;help;server-key;rotate' {
            break
        }
        'zavro;help;store' {
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Print whether the store is sealed, and the fingerprint of the master key it is sealed under')
            [CompletionResult]::new('seal', 'seal', [CompletionResultType]::ParameterValue, 'Seal every secret of the store under the master key of --master-key-file (made first with --create-key); from then on serve and keys add need that key file. A store that does not exist yet is created sealed, so no secret is ever kept in clear text in it')
            [CompletionResult]::new('reseal', 'reseal', [CompletionResultType]::ParameterValue, 'Move every secret from the current master key (--master-key-file) to a new one, in one transaction')
            [CompletionResult]::new('copy', 'copy', [CompletionResultType]::ParameterValue, 'Copy a SQLite store into an empty PostgreSQL database (--db is not used): keys, server keys, schemas, the audit trail with its hash chain, and the nonces of the replay window')
            break
        }
        'zavro;help;store;status' {
            break
        }
        'zavro;help;store;seal' {
            break
        }
        'zavro;help;store;reseal' {
            break
        }
        'zavro;help;store;copy' {
            break
        }
        'zavro;help;completions' {
            break
        }
        'zavro;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
