// Prisma's CLI (migrate, db push, studio) reads this file. It connects with DIRECT_DATABASE_URL, straight to
// PostgreSQL: migrations take session-level locks and run DDL, which belong on a direct connection, not on a
// transaction-pooled one. The application itself connects through pgtide (src/db.ts).
import 'dotenv/config';
import { defineConfig, env } from 'prisma/config';

export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: env('DIRECT_DATABASE_URL') },
});
