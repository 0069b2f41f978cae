/* The user's guide's pgbouncer.ini, verbatim (the ```ini block of "Step 2: Configure PgBouncer" in
 * ../shared/seed/000_d3a435deee693e48.txt), shared by the loader unit test and the end-to-end seed test. */

export const SEED_INI = `[databases]
tracking = host=postgres port=5432 dbname=tracking user=postgres password=your_password

[pgbouncer]
pool_mode = transaction
default_pool_size = 25
min_pool_size = 5
reserve_pool_size = 5
reserve_pool_timeout = 3
timeout = 600
idle_in_transaction_session_timeout = 60000

listen_port = 6432
listen_addr = 0.0.0.0

logfile = /var/log/pgbouncer/pgbouncer.log
pidfile = /var/run/pgbouncer/pgbouncer.pid
`;
