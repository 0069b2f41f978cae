/* The shape of a loaded configuration: what config/loader.ts produces and the pooler consumes. */

export type PoolMode = 'session' | 'transaction' | 'statement';

export type AuthType =
  | 'any'
  | 'trust'
  | 'plain'
  | 'md5'
  | 'scram-sha-256'
  | 'cert'
  | 'hba'
  | 'pam'
  | 'ldap';

/** One `[databases]` entry: `name = host=… port=… dbname=…`. Unset keys are undefined. */
export interface DatabaseEntry {
  /** Client-side database name (the key in [databases]); `*` for the fallback entry. */
  name: string;
  /** Host name or IP; a path starting with `/` is a unix-socket directory. undefined = unix_socket_dir. */
  host?: string;
  port: number;
  /** Server-side database name; undefined = same as the client-side name. */
  dbname?: string;
  /** Forced user: every client of this db shares one pool logged in as this user. */
  user?: string;
  password?: string;
  auth_user?: string;
  auth_query?: string;
  auth_dbname?: string;
  pool_size?: number;
  min_pool_size?: number;
  reserve_pool_size?: number;
  pool_mode?: PoolMode;
  max_db_connections?: number;
  max_db_client_connections?: number;
  server_lifetime?: number;
  client_encoding?: string;
  datestyle?: string;
  timezone?: string;
  application_name?: string;
  connect_query?: string;
  load_balance_hosts?: string;
  /** Per-database query_wait_timeout in seconds (PgBouncer master). */
  query_wait_timeout?: number;
  /** The connstring as written, for logs and SHOW DATABASES; password never included. */
  source: { file: string; line: number };
}

/** One `[users]` entry. */
export interface UserEntry {
  name: string;
  pool_mode?: PoolMode;
  pool_size?: number;
  reserve_pool_size?: number;
  max_user_connections?: number;
  max_user_client_connections?: number;
  query_timeout?: number;
  idle_transaction_timeout?: number;
  client_idle_timeout?: number;
  transaction_timeout?: number;
  query_wait_timeout?: number;
  source: { file: string; line: number };
}

/** Something the loader accepted but the user should know about (unknown key, deprecated name). */
export interface ConfigWarning {
  file: string;
  line: number;
  message: string;
}
