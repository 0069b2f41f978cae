/* Connection states. Each state is one list; Pool.setClientState / setServerState are the only movers. */

export const enum ClientState {
  /** Startup and authentication (pooler.loginClients). */
  Login = 0,
  /** Authenticated, waiting for the pool's first server to learn its parameters (pool.loginWaitClients). */
  WaitingLogin = 1,
  /** Logged in: idle or linked to a server (pool.activeClients). */
  Active = 2,
  /** Has a request and waits for a server (pool.waitingClients). */
  Waiting = 3,
  /** Gone (on no list). */
  Closed = 4,
}

export const CLIENT_STATE_NAMES = ['login', 'waiting', 'active', 'waiting', 'closed'] as const;

export const enum ServerState {
  /** Connecting and logging in (pool.loginServers). */
  Login = 0,
  /** Ready for a client (pool.idleServers). */
  Idle = 1,
  /** Linked to a client, or finishing a departed client's request (pool.activeServers). */
  Active = 2,
  /** Idle past server_check_delay: checked before next use (pool.usedServers). */
  Used = 3,
  /** Running server_reset_query or server_check_query (pool.testedServers). */
  Tested = 4,
  /** Gone (on no list). */
  Closed = 5,
}

export const SERVER_STATE_NAMES = ['new', 'idle', 'active', 'used', 'tested', 'closed'] as const;
