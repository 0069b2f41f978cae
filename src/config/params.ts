/* The [pgbouncer] settings table: one entry per PgBouncer setting; drives parsing, SET, SHOW CONFIG and docs/config.md. */

import type { AuthType, PoolMode } from './types.js';

export type ParamKind = 'int' | 'bool' | 'string' | 'time' | 'enum' | 'list';

/** 'supported': pgtide implements it. 'accepted': parsed and shown, but it has no effect yet. */
export type ParamStatus = 'supported' | 'accepted';

/** Groups used by docs/config.md, following the areas of PgBouncer's documentation. */
export type ParamArea =
  | 'generic'
  | 'pooling'
  | 'limits'
  | 'timeouts'
  | 'auth'
  | 'tls-client'
  | 'tls-server'
  | 'logging'
  | 'console'
  | 'checks'
  | 'network'
  | 'extras'
  | 'safety'
  | 'metrics';

export const AREAS: readonly { readonly area: ParamArea; readonly title: string }[] = [
  { area: 'generic', title: 'Generic / process' },
  { area: 'pooling', title: 'Pooling' },
  { area: 'limits', title: 'Limits' },
  { area: 'timeouts', title: 'Timeouts and DNS' },
  { area: 'auth', title: 'Authentication' },
  { area: 'tls-client', title: 'TLS, client side' },
  { area: 'tls-server', title: 'TLS, server side' },
  { area: 'logging', title: 'Logging' },
  { area: 'console', title: 'Console access' },
  { area: 'checks', title: 'Connection sanity checks' },
  { area: 'network', title: 'Low-level network' },
  { area: 'extras', title: 'Prepared statements and peers' },
  { area: 'safety', title: 'Session state in transaction pooling (pgtide only)' },
  { area: 'metrics', title: 'Prometheus metrics (pgtide only)' },
];

export interface ParamDef {
  readonly name: string;
  readonly kind: ParamKind;
  /** Default as PgBouncer writes it in its table (the `default` column of SHOW CONFIG). */
  readonly default: string;
  /** PgBouncer's default is "not set": SHOW CONFIG shows NULL in the default column. `default` is then the effective value. */
  readonly unsetDefault?: boolean;
  /** Allowed values of an enum, compared case-insensitively; stored in this spelling. */
  readonly values?: readonly string[];
  /** PgBouncer's "changeable": false means it is read at startup only. */
  readonly reloadable: boolean;
  readonly status: ParamStatus;
  readonly area: ParamArea;
  /** One line, our own words. */
  readonly doc: string;
  /** Another name for the same setting; setting either sets both. */
  readonly aliasOf?: string;
  /** int only: PgBouncer stores it unsigned (0 … 4294967295). */
  readonly unsigned?: boolean;
  /** pgtide's own setting (PgBouncer has no such key). */
  readonly pgtide?: boolean;
  /** int only: extra bounds pgtide checks. */
  readonly min?: number;
  readonly max?: number;
}

const POOL_MODES = ['session', 'transaction', 'statement'] as const satisfies readonly PoolMode[];
const STATE_POLICIES = ['pin', 'refuse', 'allow'] as const;
const AUTH_TYPES = [
  'any',
  'trust',
  'plain',
  'md5',
  'scram-sha-256',
  'cert',
  'hba',
  'pam',
  'ldap',
] as const satisfies readonly AuthType[];
const SSLMODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;

export const DEFAULT_AUTH_QUERY =
  'SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM pg_authid WHERE rolname=$1 AND rolcanlogin';

/**
 * Alphabetical (byte order), like PgBouncer's table: SHOW CONFIG lists rows in this order.
 * Defaults follow PgBouncer master (see shared/reference/pgbouncer-features.md §1.2).
 */
export const PARAMS = [
  { name: 'admin_users', kind: 'list', default: '', reloadable: true, status: 'supported', area: 'console',
    doc: 'Comma-separated users allowed to run every admin console command.' },
  { name: 'application_name_add_host', kind: 'bool', default: '0', reloadable: true, status: 'supported', area: 'generic',
    doc: "Append the client's host:port to application_name when it logs in." },
  { name: 'auth_dbname', kind: 'string', default: '', unsetDefault: true, reloadable: true, status: 'supported', area: 'auth',
    doc: 'Database ([databases] entry) in which auth_query runs; default is the database being connected to.' },
  { name: 'auth_file', kind: 'string', default: '', unsetDefault: true, reloadable: true, status: 'supported', area: 'auth',
    doc: 'Users-and-secrets file (userlist.txt format); a relative path is taken from the working directory.' },
  { name: 'auth_hba_file', kind: 'string', default: '', reloadable: true, status: 'supported', area: 'auth',
    doc: 'pg_hba.conf-style rules, used when auth_type is hba.' },
  { name: 'auth_ident_file', kind: 'string', default: '', unsetDefault: true, reloadable: true, status: 'accepted', area: 'auth',
    doc: 'Ident map file for map= options in the HBA rules.' },
  { name: 'auth_ldap_options', kind: 'string', default: '', unsetDefault: true, reloadable: true, status: 'accepted', area: 'auth',
    doc: 'LDAP connection options used when auth_type is ldap.' },
  { name: 'auth_query', kind: 'string', default: DEFAULT_AUTH_QUERY, reloadable: true, status: 'supported', area: 'auth',
    doc: 'Query that fetches the secret of a user missing from auth_file ($1 is the user name).' },
  { name: 'auth_type', kind: 'enum', default: 'md5', values: AUTH_TYPES, reloadable: true, status: 'supported', area: 'auth',
    doc: 'How clients prove who they are; md5 switches to SCRAM when the stored secret is a SCRAM secret.' },
  { name: 'auth_user', kind: 'string', default: '', unsetDefault: true, reloadable: true, status: 'supported', area: 'auth',
    doc: 'User that runs auth_query; its own password comes from auth_file.' },
  { name: 'autodb_idle_timeout', kind: 'time', default: '3600', reloadable: true, status: 'supported', area: 'timeouts',
    doc: 'Drop databases created from the * entry after they have been unused this long.' },
  { name: 'busy_poll_us', kind: 'int', default: '0', min: 0, max: 1000, reloadable: true, status: 'supported', area: 'network', pgtide: true,
    doc: 'After reading from a socket, keep the event loop polling for this many microseconds before it sleeps (like Linux net.core.busy_poll). A reply that comes within it is read without waking the process: less latency at low concurrency (1 client: about a third less per query here), for up to this much more CPU per idle gap. 0 = sleep at once, as PgBouncer. Per process; see docs/benchmarks.md.' },
  { name: 'cancel_wait_timeout', kind: 'time', default: '10', reloadable: true, status: 'supported', area: 'timeouts',
    doc: 'Give up on forwarding a cancel request after this long.' },
  { name: 'client_idle_timeout', kind: 'time', default: '0', reloadable: true, status: 'supported', area: 'timeouts',
    doc: 'Close client connections idle for longer than this (0 = never).' },
  { name: 'client_login_timeout', kind: 'time', default: '60', reloadable: true, status: 'supported', area: 'timeouts',
    doc: 'A client that has not finished logging in within this time is disconnected.' },
  { name: 'client_tls13_ciphers', kind: 'string', default: '', unsetDefault: true, reloadable: true, status: 'supported', area: 'tls-client',
    doc: 'TLS 1.3 cipher suites offered to clients.' },
  { name: 'client_tls_ca_file', kind: 'string', default: '', reloadable: true, status: 'supported', area: 'tls-client',
    doc: 'CA certificates used to check client certificates.' },
  { name: 'client_tls_cert_file', kind: 'string', default: '', reloadable: true, status: 'supported', area: 'tls-client',
    doc: 'Certificate the pooler presents to clients.' },
  { name: 'client_tls_ciphers', kind: 'string', default: 'default', reloadable: true, status: 'supported', area: 'tls-client',
    doc: 'OpenSSL cipher list for client TLS up to 1.2.' },
  { name: 'client_tls_dheparams', kind: 'string', default: 'auto', reloadable: true, status: 'supported', area: 'tls-client',
    doc: 'Diffie-Hellman parameters for client TLS: none, auto or legacy.' },
  { name: 'client_tls_ecdhcurve', kind: 'string', default: 'auto', reloadable: true, status: 'supported', area: 'tls-client',
    doc: 'Elliptic curve for ECDH key exchange with clients: none, auto or a curve name.' },
  { name: 'client_tls_key_file', kind: 'string', default: '', reloadable: true, status: 'supported', area: 'tls-client',
    doc: 'Private key matching client_tls_cert_file.' },
  { name: 'client_tls_protocols', kind: 'string', default: 'secure', reloadable: true, status: 'supported', area: 'tls-client',
    doc: 'TLS versions allowed for clients (tlsv1.0 … tlsv1.3, all, secure).' },
  { name: 'client_tls_sslmode', kind: 'enum', default: 'disable', values: SSLMODES, reloadable: true, status: 'supported', area: 'tls-client',
    doc: 'Whether clients may, or must, use TLS, and whether their certificates are checked.' },
  { name: 'conffile', kind: 'string', default: '', unsetDefault: true, reloadable: true, status: 'supported', area: 'generic',
    doc: 'Path of the configuration file; changing it changes what the next RELOAD reads.' },
  { name: 'default_pool_size', kind: 'int', default: '20', reloadable: true, status: 'supported', area: 'pooling',
    doc: 'Server connections per (database, user) pool; 0 means no limit.' },
  { name: 'disable_pqexec', kind: 'bool', default: '0', reloadable: false, status: 'accepted', area: 'generic',
    doc: 'Refuse the simple query protocol, leaving only the extended protocol.' },
  { name: 'dns_max_ttl', kind: 'time', default: '15', reloadable: true, status: 'accepted', area: 'timeouts',
    doc: 'How long a successful DNS answer is cached.' },
  { name: 'dns_nxdomain_ttl', kind: 'time', default: '15', reloadable: true, status: 'accepted', area: 'timeouts',
    doc: 'How long a failed or NXDOMAIN DNS answer is cached.' },
  { name: 'dns_zone_check_period', kind: 'time', default: '0', reloadable: true, status: 'accepted', area: 'timeouts',
    doc: 'Period for polling DNS zone serials to notice changes (0 = off).' },
  { name: 'idle_transaction_timeout', kind: 'time', default: '0', reloadable: true, status: 'supported', area: 'timeouts',
    doc: 'Disconnect a client that sits idle inside a transaction for this long (0 = never).' },
  { name: 'ignore_startup_parameters', kind: 'list', default: '', reloadable: true, status: 'supported', area: 'pooling',
    doc: 'Startup parameters to accept and ignore instead of refusing the client (may include options).' },
  { name: 'job_name', kind: 'string', default: 'pgbouncer', aliasOf: 'service_name', reloadable: false, status: 'accepted', area: 'generic',
    doc: "Windows service name (PgBouncer's original spelling)." },
  { name: 'listen_addr', kind: 'list', default: '', reloadable: false, status: 'supported', area: 'generic',
    doc: 'Comma-separated TCP addresses to listen on; * means all; empty means unix socket only.' },
  { name: 'listen_backlog', kind: 'int', default: '128', reloadable: false, status: 'supported', area: 'network',
    doc: 'Backlog passed to listen() for the listening sockets.' },
  { name: 'listen_port', kind: 'int', default: '6432', min: 0, max: 65535, reloadable: false, status: 'supported', area: 'generic',
    doc: 'TCP port to listen on; also names the unix socket .s.PGSQL.<port>.' },
  { name: 'log_connections', kind: 'bool', default: '1', reloadable: true, status: 'supported', area: 'logging',
    doc: 'Log each successful client login.' },
  { name: 'log_disconnections', kind: 'bool', default: '1', reloadable: true, status: 'supported', area: 'logging',
    doc: 'Log each disconnection with its reason.' },
  { name: 'log_pooler_errors', kind: 'bool', default: '1', reloadable: true, status: 'supported', area: 'logging',
    doc: 'Log the errors the pooler itself sends to clients.' },
  { name: 'log_stats', kind: 'bool', default: '1', reloadable: true, status: 'supported', area: 'logging',
    doc: 'Write a statistics line every stats_period.' },
  { name: 'logfile', kind: 'string', default: '', reloadable: true, status: 'supported', area: 'generic',
    doc: 'File to append the log to (reopened on RELOAD); stderr output continues unless -q or -d.' },
  { name: 'login_notify_message', kind: 'string', default: '', reloadable: true, status: 'accepted', area: 'checks',
    doc: 'NOTICE text sent to each client right after it logs in.' },
  { name: 'max_client_conn', kind: 'int', default: '100', reloadable: true, status: 'supported', area: 'limits',
    doc: 'Most client connections the pooler accepts in total.' },
  { name: 'max_concurrent_logins_per_host', kind: 'int', default: '50', reloadable: true, status: 'supported', area: 'limits', pgtide: true,
    doc: 'Most TCP clients from one address that may be logging in at once (0 = no limit); more wait, unread, for a free slot (client_login_timeout still applies), so a login storm cannot starve running traffic.' },
  { name: 'max_db_client_connections', kind: 'int', default: '0', reloadable: true, status: 'accepted', area: 'limits',
    doc: 'Most client connections per database (0 = no limit).' },
  { name: 'max_db_connections', kind: 'int', default: '0', reloadable: true, status: 'supported', area: 'limits',
    doc: 'Most server connections per database across all its pools (0 = no limit).' },
  { name: 'max_packet_size', kind: 'int', default: '2147483647', unsigned: true, reloadable: true, status: 'supported', area: 'limits',
    doc: 'Largest protocol message, in bytes, let through.' },
  { name: 'max_prepared_statements', kind: 'int', default: '200', reloadable: true, status: 'supported', area: 'extras',
    doc: 'Protocol-level named prepared statements are tracked in transaction and statement modes, and each server connection keeps at most this many (least recently used closed first). 0 = not tracked. See docs/transaction-mode.md.' },
  { name: 'max_user_client_connections', kind: 'int', default: '0', reloadable: true, status: 'accepted', area: 'limits',
    doc: 'Most client connections per user (0 = no limit).' },
  { name: 'max_user_connections', kind: 'int', default: '0', reloadable: true, status: 'supported', area: 'limits',
    doc: 'Most server connections per user across all its pools (0 = no limit).' },
  { name: 'metrics_listen_addr', kind: 'list', default: '127.0.0.1', reloadable: false, status: 'supported', area: 'metrics', pgtide: true,
    doc: 'Comma-separated TCP addresses the metrics endpoint listens on (* means all); used when metrics_port is set. The endpoint has no authentication: keep it off public networks.' },
  { name: 'metrics_port', kind: 'int', default: '0', min: 0, max: 65535, reloadable: false, status: 'supported', area: 'metrics', pgtide: true,
    doc: 'TCP port of the Prometheus endpoint (GET /metrics: PgBouncer\'s SHOW figures under pgbouncer_exporter\'s metric names, and pgtide\'s own); 0 = no endpoint. 9127 is the exporter\'s usual port.' },
  { name: 'min_pool_size', kind: 'int', default: '0', reloadable: true, status: 'supported', area: 'pooling',
    doc: 'Keep at least this many server connections open in each pool.' },
  { name: 'peer_id', kind: 'int', default: '0', reloadable: true, status: 'accepted', area: 'extras',
    doc: "This process's id in a group of peers that forward cancel requests (0 = no peering)." },
  { name: 'pidfile', kind: 'string', default: '', reloadable: false, status: 'supported', area: 'generic',
    doc: 'File to write the process id to; required with -d.' },
  { name: 'pkt_buf', kind: 'int', default: '4096', reloadable: false, status: 'supported', area: 'network',
    doc: 'Size of the internal packet buffer, in bytes.' },
  { name: 'pool_idle_timeout', kind: 'time', default: '0', reloadable: true, status: 'accepted', area: 'timeouts',
    doc: 'Free a (database, user) pool with no connections after it has been unused this long (0 = never).' },
  { name: 'pool_mode', kind: 'enum', default: 'session', values: POOL_MODES, reloadable: true, status: 'supported', area: 'pooling',
    doc: 'When a server connection goes back to the pool: session, transaction or statement.' },
  { name: 'query_timeout', kind: 'time', default: '0', reloadable: true, status: 'supported', area: 'timeouts',
    doc: 'Cancel a query that runs longer than this (0 = never).' },
  { name: 'query_wait_notify', kind: 'int', default: '5', reloadable: true, status: 'accepted', area: 'timeouts',
    doc: 'Send a NOTICE to a client that has waited this many seconds for a server (0 = never).' },
  { name: 'query_wait_timeout', kind: 'time', default: '120', reloadable: true, status: 'supported', area: 'timeouts',
    doc: 'Disconnect a client that has waited this long for a server connection (0 = wait forever).' },
  { name: 'reserve_pool_size', kind: 'int', default: '0', reloadable: true, status: 'supported', area: 'pooling',
    doc: 'Extra server connections a pool may open once a client has waited reserve_pool_timeout.' },
  { name: 'reserve_pool_timeout', kind: 'time', default: '5', reloadable: true, status: 'supported', area: 'pooling',
    doc: 'How long a client waits before the reserve pool may be used.' },
  { name: 'resolv_conf', kind: 'string', default: '', reloadable: false, status: 'accepted', area: 'timeouts',
    doc: 'Alternative resolv.conf for the DNS resolver.' },
  { name: 'sbuf_loopcnt', kind: 'int', default: '5', reloadable: true, status: 'accepted', area: 'network',
    doc: 'How many buffers one connection may process per event-loop turn (0 = no limit).' },
  { name: 'scram_iterations', kind: 'int', default: '4096', reloadable: true, status: 'accepted', area: 'auth',
    doc: 'Iteration count for SCRAM secrets the pooler computes itself.' },
  { name: 'server_check_delay', kind: 'time', default: '30', reloadable: true, status: 'supported', area: 'checks',
    doc: 'A server connection idle for less than this is reused without running server_check_query.' },
  { name: 'server_check_query', kind: 'string', default: '<empty>', reloadable: true, status: 'supported', area: 'checks',
    doc: 'Query that checks an idle server connection before reuse; empty disables it, <empty> sends an empty query.' },
  { name: 'server_connect_timeout', kind: 'time', default: '15', reloadable: true, status: 'supported', area: 'timeouts',
    doc: 'Time allowed for connecting and logging in to the server.' },
  { name: 'server_fast_close', kind: 'bool', default: '0', reloadable: true, status: 'accepted', area: 'checks',
    doc: 'In session mode, close servers marked close_needed at the end of the transaction, with their client.' },
  { name: 'server_idle_timeout', kind: 'time', default: '600', reloadable: true, status: 'supported', area: 'timeouts',
    doc: 'Close server connections idle for longer than this (0 = never).' },
  { name: 'server_lifetime', kind: 'time', default: '3600', reloadable: true, status: 'supported', area: 'timeouts',
    doc: 'Close an unused server connection older than this (0 = use each connection once).' },
  { name: 'server_login_retry', kind: 'time', default: '15', reloadable: true, status: 'supported', area: 'timeouts',
    doc: 'After a failed connect or login, wait this long before trying again.' },
  { name: 'server_reset_query', kind: 'string', default: 'DISCARD ALL', reloadable: true, status: 'supported', area: 'checks',
    doc: 'Query run when a session-mode server connection is released; empty disables it.' },
  { name: 'server_reset_query_always', kind: 'bool', default: '0', reloadable: true, status: 'supported', area: 'checks',
    doc: 'Run server_reset_query in transaction and statement modes too.' },
  { name: 'server_round_robin', kind: 'bool', default: '0', reloadable: true, status: 'supported', area: 'pooling',
    doc: 'Reuse idle server connections in turn (1) instead of most-recently-used first (0).' },
  { name: 'server_tls13_ciphers', kind: 'string', default: '', unsetDefault: true, reloadable: true, status: 'supported', area: 'tls-server',
    doc: 'TLS 1.3 cipher suites offered to the server.' },
  { name: 'server_tls_ca_file', kind: 'string', default: '', reloadable: true, status: 'supported', area: 'tls-server',
    doc: "CA certificates used to check the server's certificate." },
  { name: 'server_tls_cert_file', kind: 'string', default: '', reloadable: true, status: 'supported', area: 'tls-server',
    doc: 'Client certificate the pooler presents to the server.' },
  { name: 'server_tls_ciphers', kind: 'string', default: 'default', reloadable: true, status: 'supported', area: 'tls-server',
    doc: 'OpenSSL cipher list for server TLS up to 1.2.' },
  { name: 'server_tls_key_file', kind: 'string', default: '', reloadable: true, status: 'supported', area: 'tls-server',
    doc: 'Private key matching server_tls_cert_file.' },
  { name: 'server_tls_protocols', kind: 'string', default: 'secure', reloadable: true, status: 'supported', area: 'tls-server',
    doc: 'TLS versions allowed towards the server.' },
  { name: 'server_tls_sslmode', kind: 'enum', default: 'prefer', values: SSLMODES, reloadable: true, status: 'supported', area: 'tls-server',
    doc: 'Whether server connections use TLS and how the server certificate is checked (libpq meanings).' },
  { name: 'service_name', kind: 'string', default: 'pgbouncer', aliasOf: 'job_name', reloadable: false, status: 'accepted', area: 'generic',
    doc: 'Windows service name.' },
  { name: 'session_state_policy', kind: 'enum', default: 'pin', values: STATE_POLICIES, reloadable: true, status: 'supported', area: 'safety', pgtide: true,
    doc: 'Transaction/statement mode, a statement that leaves session state behind (a SET not in track_set_parameters, SQL PREPARE, an advisory lock, a temporary table, a WITH HOLD cursor, LISTEN, LOAD, SET ROLE): pin = keep the client on its server until the state is gone; refuse = answer it with an error instead (simple protocol); allow = PgBouncer\'s behaviour (not looked at; the state stays on the server for the next client).' },
  { name: 'so_reuseport', kind: 'bool', default: '0', reloadable: false, status: 'accepted', area: 'network',
    doc: 'Set SO_REUSEPORT so several processes can listen on the same port.' },
  { name: 'stats_period', kind: 'int', default: '60', reloadable: true, status: 'supported', area: 'generic',
    doc: 'Seconds between statistics averages and log_stats lines.' },
  { name: 'stats_users', kind: 'list', default: '', reloadable: true, status: 'supported', area: 'console',
    doc: 'Comma-separated users allowed read-only SHOW commands on the admin console.' },
  { name: 'suspend_timeout', kind: 'time', default: '10', reloadable: true, status: 'accepted', area: 'timeouts',
    doc: 'How long SUSPEND waits for buffers to drain before dropping a connection.' },
  { name: 'syslog', kind: 'bool', default: '0', reloadable: true, status: 'accepted', area: 'logging',
    doc: 'Also log to syslog.' },
  { name: 'syslog_facility', kind: 'string', default: 'daemon', reloadable: true, status: 'accepted', area: 'logging',
    doc: 'Syslog facility to log under.' },
  { name: 'syslog_ident', kind: 'string', default: 'pgbouncer', reloadable: true, status: 'accepted', area: 'logging',
    doc: 'Program name used in syslog lines.' },
  { name: 'tcp_defer_accept', kind: 'int', default: '1', reloadable: true, status: 'accepted', area: 'network',
    doc: 'TCP_DEFER_ACCEPT on listening sockets (PgBouncer default 1 on Linux, 0 elsewhere).' },
  { name: 'tcp_keepalive', kind: 'bool', default: '1', reloadable: true, status: 'supported', area: 'network',
    doc: 'Turn on TCP keepalive with the operating system defaults.' },
  { name: 'tcp_keepcnt', kind: 'int', default: '0', reloadable: true, status: 'accepted', area: 'network',
    doc: 'Keepalive probes before the connection is dropped (0 = OS default).' },
  { name: 'tcp_keepidle', kind: 'int', default: '0', reloadable: true, status: 'accepted', area: 'network',
    doc: 'Idle seconds before the first keepalive probe (0 = OS default).' },
  { name: 'tcp_keepintvl', kind: 'int', default: '0', reloadable: true, status: 'accepted', area: 'network',
    doc: 'Seconds between keepalive probes (0 = OS default).' },
  { name: 'tcp_socket_buffer', kind: 'int', default: '0', reloadable: true, status: 'accepted', area: 'network',
    doc: 'Socket send and receive buffer size in bytes (0 = OS default).' },
  { name: 'tcp_user_timeout', kind: 'int', default: '0', reloadable: true, status: 'accepted', area: 'network',
    doc: 'TCP_USER_TIMEOUT in milliseconds (0 = OS default).' },
  { name: 'track_extra_parameters', kind: 'list', default: 'IntervalStyle', reloadable: false, status: 'supported', area: 'pooling',
    doc: 'Extra reported server parameters to remember per client and restore on whichever server it gets.' },
  { name: 'track_set_parameters', kind: 'list', default: 'statement_timeout,lock_timeout,idle_in_transaction_session_timeout,search_path,work_mem', reloadable: true, status: 'supported', area: 'safety', pgtide: true,
    doc: 'Transaction/statement mode: settings a client may SET (or RESET) for its session; pgtide remembers them per client and applies them on whichever server the client gets, and resets them for the next client.' },
  { name: 'transaction_timeout', kind: 'time', default: '0', reloadable: true, status: 'accepted', area: 'timeouts',
    doc: 'Disconnect a client whose transaction has been open this long (0 = never).' },
  { name: 'unix_socket_dir', kind: 'string', default: '/tmp', reloadable: false, status: 'supported', area: 'generic',
    doc: 'Directory for the unix socket (empty = no unix socket); also the default server host.' },
  { name: 'unix_socket_group', kind: 'string', default: '', reloadable: false, status: 'accepted', area: 'generic',
    doc: 'Group owning the unix socket file.' },
  { name: 'unix_socket_mode', kind: 'int', default: '0777', reloadable: false, status: 'supported', area: 'generic',
    doc: 'Permissions of the unix socket file (octal with a leading 0).' },
  { name: 'user', kind: 'string', default: '', unsetDefault: true, reloadable: false, status: 'accepted', area: 'generic',
    doc: 'Switch to this operating-system user after startup (like -u).' },
  { name: 'verbose', kind: 'int', default: '0', unsetDefault: true, reloadable: true, status: 'supported', area: 'logging',
    doc: 'Log detail: 0 = normal, 1 = debug, 2 and up = noise (each -v adds one).' },
  { name: 'workers', kind: 'int', default: '1', min: 1, max: 64, reloadable: false, status: 'supported', area: 'generic', pgtide: true,
    doc: 'Processes that serve clients on the one port (node:cluster). 1 = a single process, as PgBouncer. With more, the process started first is the primary (pidfile, signals, restarting a worker that dies) and the limits (max_client_conn, pool sizes, max_db/user_connections) stay global; see docs/differences.md.' },
] as const satisfies readonly ParamDef[];

type TableEntry = (typeof PARAMS)[number];

type ValueOf<P extends ParamDef> = P['kind'] extends 'int' | 'time'
  ? number
  : P['kind'] extends 'bool'
    ? boolean
    : P['kind'] extends 'list'
      ? string[]
      : P['kind'] extends 'enum'
        ? P extends { readonly values: readonly (infer V)[] }
          ? V
          : string
        : string;

/** Every [pgbouncer] setting with its typed value: times in seconds, lists as arrays, enums as their literal unions. */
export type Settings = { [P in TableEntry as P['name']]: ValueOf<P> };
export type SettingName = keyof Settings;
export type SettingValue = Settings[SettingName];

const BY_NAME: ReadonlyMap<string, ParamDef> = new Map(PARAMS.map((p) => [p.name, p]));

/** The table entry for a setting name (exact, case-sensitive like PgBouncer), or undefined. */
export function findParam(name: string): ParamDef | undefined {
  return BY_NAME.get(name);
}

/** Thrown by the value parsers; the message says what is accepted. */
export class InvalidValueError extends Error {
  constructor(
    readonly key: string,
    readonly raw: string,
    readonly expected: string,
  ) {
    super(`invalid value "${raw}" for ${key}: ${expected}`);
    this.name = 'InvalidValueError';
  }
}

// ---- per-kind parsers (shared with connstring.ts) -------------------------------------------------

export const EXPECT_INT = 'expected an integer (decimal, 0x-prefixed hex or 0-prefixed octal), e.g. 20';
export const EXPECT_BOOL = 'expected 0 or 1 (PgBouncer booleans are integers; any non-zero integer means on)';
export const EXPECT_TIME = 'expected a number of seconds, 0 or more, fractions allowed (e.g. 600 or 2.5)';

const INT_RE = /^([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/;

/** strtol(…, 0) rules without its leniency: optional sign, decimal / 0x hex / 0 octal, nothing after the digits. */
export function parseIntText(raw: string): number | undefined {
  const m = INT_RE.exec(raw.trim());
  if (!m) return undefined;
  const digits = m[2] as string;
  let n: number;
  if (/^0[xX]/.test(digits)) n = parseInt(digits.slice(2), 16);
  else if (digits.length > 1 && digits.startsWith('0')) n = parseInt(digits.slice(1), 8);
  else n = parseInt(digits, 10);
  return m[1] === '-' ? -n : n;
}

const TIME_RE = /^\+?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** Seconds as PgBouncer reads them (strtod, >= 0), truncated to whole microseconds as PgBouncer stores them. */
export function parseSecondsText(raw: string): number | undefined {
  const text = raw.trim();
  if (!TIME_RE.test(text)) return undefined;
  const v = Number(text);
  if (!Number.isFinite(v) || v < 0) return undefined;
  return Math.trunc(v * 1e6) / 1e6;
}

/** Case-insensitive lookup (PgBouncer uses strcasecmp); returns the canonical spelling. */
export function parseEnumText<V extends string>(raw: string, values: readonly V[]): V | undefined {
  const lower = raw.trim().toLowerCase();
  return values.find((v) => v.toLowerCase() === lower);
}

/** Comma-separated, each item trimmed, empty items dropped. */
export function parseListText(raw: string): string[] {
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;
const UINT32_MAX = 4294967295;

function parseIntParam(p: ParamDef, raw: string): number {
  const n = parseIntText(raw);
  if (n === undefined) throw new InvalidValueError(p.name, raw, EXPECT_INT);
  const lo = p.min ?? (p.unsigned ? 0 : INT32_MIN);
  const hi = p.max ?? (p.unsigned ? UINT32_MAX : INT32_MAX);
  if (n < lo || n > hi) throw new InvalidValueError(p.name, raw, `expected an integer from ${lo} to ${hi}`);
  return n;
}

function parseBoolParam(p: ParamDef, raw: string): boolean {
  const n = parseIntText(raw);
  if (n === undefined || n < INT32_MIN || n > INT32_MAX) throw new InvalidValueError(p.name, raw, EXPECT_BOOL);
  return n !== 0;
}

function parseTimeParam(p: ParamDef, raw: string): number {
  const v = parseSecondsText(raw);
  if (v === undefined) throw new InvalidValueError(p.name, raw, EXPECT_TIME);
  return v;
}

function parseEnumParam(p: ParamDef, raw: string): string {
  const values = p.values ?? [];
  const v = parseEnumText(raw, values);
  if (v === undefined) throw new InvalidValueError(p.name, raw, `expected one of: ${values.join(', ')}`);
  return v;
}

function resolveParam(param: ParamDef | string): ParamDef {
  if (typeof param !== 'string') return param;
  const p = findParam(param);
  if (!p) throw new Error(`unknown setting "${param}"`);
  return p;
}

/**
 * Parse a raw text value (from the ini file or SET) into its typed value.
 * Throws InvalidValueError saying what is accepted.
 */
export function parseSettingValue<K extends SettingName>(param: K, raw: string): Settings[K];
export function parseSettingValue(param: ParamDef, raw: string): SettingValue;
export function parseSettingValue(param: ParamDef | string, raw: string): SettingValue {
  const p = resolveParam(param);
  switch (p.kind) {
    case 'int':
      return parseIntParam(p, raw);
    case 'bool':
      return parseBoolParam(p, raw);
    case 'time':
      return parseTimeParam(p, raw);
    case 'enum':
      return parseEnumParam(p, raw) as SettingValue;
    case 'list':
      return parseListText(raw);
    case 'string':
      return raw;
  }
}

/** C's printf("%g"): 6 significant digits, trailing zeros dropped, exponent form outside 1e-4 … 1e6. */
export function formatG(n: number): string {
  if (n === 0) return '0';
  const [mant, expText] = n.toExponential(5).split('e') as [string, string];
  const exp = Number(expText);
  const strip = (s: string): string => (s.includes('.') ? s.replace(/\.?0+$/, '') : s);
  if (exp < -4 || exp >= 6) {
    const sign = exp < 0 ? '-' : '+';
    return `${strip(mant)}e${sign}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  return strip(n.toFixed(5 - exp));
}

/** The text SHOW CONFIG prints for a value (times like PgBouncer's %g, booleans as 0/1, lists comma-joined). */
export function formatSettingValue(param: ParamDef | SettingName, value: SettingValue): string {
  const p = resolveParam(param);
  switch (p.kind) {
    case 'bool':
      return value ? '1' : '0';
    case 'time':
      return formatG(value as number);
    case 'list':
      return (value as string[]).join(',');
    default:
      return String(value);
  }
}

let cachedDefaults: Settings | undefined;

function buildDefaults(): Settings {
  const out: Record<string, SettingValue> = {};
  for (const p of PARAMS) out[p.name] = parseSettingValue(p, p.default);
  return out as Settings;
}

/** A fresh Settings object holding every default (arrays are copies, safe to mutate). */
export function defaultSettings(): Settings {
  cachedDefaults ??= buildDefaults();
  const copy: Record<string, SettingValue> = {};
  for (const [k, v] of Object.entries(cachedDefaults)) copy[k] = Array.isArray(v) ? [...v] : v;
  return copy as Settings;
}

/** The parsed default of one setting. */
export function defaultValue(param: ParamDef | SettingName): SettingValue {
  const p = resolveParam(param);
  return parseSettingValue(p, p.default);
}

// ---- "did you mean" for unknown keys --------------------------------------------------------------

/**
 * Names people bring from PostgreSQL, PgCat, pgpool or Odyssey, mapped to the nearest PgBouncer settings.
 * Checked before the edit-distance search.
 */
export const SETTING_HINTS: Readonly<Record<string, readonly string[]>> = {
  idle_in_transaction_session_timeout: ['idle_transaction_timeout'],
  idle_client_in_transaction_timeout: ['idle_transaction_timeout'],
  timeout: ['query_timeout', 'server_idle_timeout', 'client_idle_timeout'],
  statement_timeout: ['query_timeout'],
  idle_timeout: ['server_idle_timeout', 'client_idle_timeout'],
  idle_session_timeout: ['client_idle_timeout'],
  client_idle_limit: ['client_idle_timeout'],
  connect_timeout: ['server_connect_timeout'],
  connection_timeout: ['server_connect_timeout'],
  authentication_timeout: ['client_login_timeout'],
  login_timeout: ['client_login_timeout'],
  connection_life_time: ['server_lifetime'],
  max_connections: ['max_client_conn', 'max_db_connections'],
  max_client_connections: ['max_client_conn'],
  num_init_children: ['max_client_conn'],
  pool_size: ['default_pool_size'],
  max_pool: ['default_pool_size'],
  min_pool: ['min_pool_size'],
  reserve_pool: ['reserve_pool_size'],
  default_pool_mode: ['pool_mode'],
  port: ['listen_port'],
  host: ['listen_addr'],
  bind: ['listen_addr'],
  listen_address: ['listen_addr'],
  listen_addresses: ['listen_addr'],
  listen_host: ['listen_addr'],
  unix_socket_directories: ['unix_socket_dir'],
  unix_socket_directory: ['unix_socket_dir'],
  socket_dir: ['unix_socket_dir'],
  unix_socket_permissions: ['unix_socket_mode'],
  log_file: ['logfile'],
  pid_file: ['pidfile'],
  pid_file_name: ['pidfile'],
  log_level: ['verbose'],
  loglevel: ['verbose'],
  debug: ['verbose'],
  auth_method: ['auth_type'],
  userlist: ['auth_file'],
  userlist_file: ['auth_file'],
  auth_users_file: ['auth_file'],
  hba_file: ['auth_hba_file'],
  admin_username: ['admin_users'],
  reset_query: ['server_reset_query'],
  reset_query_list: ['server_reset_query'],
  healthcheck_delay: ['server_check_delay'],
  health_check_period: ['server_check_delay'],
  prepared_statements: ['max_prepared_statements'],
  prepared_statements_cache_size: ['max_prepared_statements'],
  sslmode: ['client_tls_sslmode', 'server_tls_sslmode'],
  ssl: ['client_tls_sslmode'],
  tls_certificate: ['client_tls_cert_file'],
  tls_private_key: ['client_tls_key_file'],
  tcp_keepalives_idle: ['tcp_keepidle'],
  tcp_keepalives_interval: ['tcp_keepintvl'],
  tcp_keepalives_count: ['tcp_keepcnt'],
};

/** Damerau-Levenshtein (optimal string alignment) distance. */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[][] = Array.from({ length: rows }, (_, i) => Array.from({ length: cols }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i < rows; i++) {
    const row = d[i] as number[];
    const prev = d[i - 1] as number[];
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, ((d[i - 2] as number[])[j - 2] as number) + 1);
      }
      row[j] = best;
    }
  }
  return (d[rows - 1] as number[])[cols - 1] as number;
}

function words(name: string): string[] {
  return name.split(/[_\-.]+/).filter((w) => w.length > 0);
}

/** Words shared by two names; a word of 4+ letters also matches a longer word it starts (conn ~ connections). */
function sharedWords(a: string, b: string): number {
  const bw = words(b);
  let n = 0;
  for (const w of words(a)) {
    if (bw.some((x) => x === w || (w.length >= 4 && x.startsWith(w)) || (x.length >= 4 && w.startsWith(x)))) n++;
  }
  return n;
}

/** Up to `limit` candidate names closest to `key`, by shared words and edit distance; [] when nothing is close. */
export function closestNames(key: string, candidates: readonly string[], limit = 3): string[] {
  const k = key.toLowerCase();
  const scored = candidates
    .map((name) => ({ name, d: editDistance(k, name), shared: sharedWords(k, name) }))
    .filter((c) => c.shared > 0 || c.d <= Math.max(2, Math.floor(k.length / 3)))
    .sort((x, y) => x.d - 2 * x.shared - (y.d - 2 * y.shared) || x.d - y.d || (x.name < y.name ? -1 : 1));
  return scored.slice(0, limit).map((c) => c.name);
}

/** The real settings closest to an unknown [pgbouncer] key (hand-made hints first, then similarity). */
export function suggestSettings(key: string, limit = 3): string[] {
  const hinted = SETTING_HINTS[key.toLowerCase()];
  if (hinted) return [...hinted];
  return closestNames(
    key,
    PARAMS.map((p) => p.name),
    limit,
  );
}
