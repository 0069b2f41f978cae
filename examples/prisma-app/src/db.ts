// The application's Prisma client: its queries go through pgtide (DATABASE_URL, the pooled URL).
import 'dotenv/config';
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from './generated/prisma/client.js';

const connectionString = process.env.DATABASE_URL;
if (!connectionString) throw new Error('DATABASE_URL is not set (copy .env.example to .env)');

// `max` is this process's pg pool size: how many client connections it opens to pgtide. pgtide shares its own
// default_pool_size server connections among all of them in transaction mode.
const adapter = new PrismaPg({ connectionString, max: 10 });

export const prisma = new PrismaClient({ adapter });
