// Create, read, update and delete through pgtide, plus what transaction pooling must get right: a batch
// transaction, an interactive transaction and concurrent queries. Each step prints one line: a name and JSON.
import { prisma } from './db.js';

function show(step: string, value: unknown): void {
  console.log(`${step} ${JSON.stringify(value)}`);
}

try {
  const task = await prisma.task.create({ data: { title: 'try pgtide' } });
  show('created', task);

  show('read', await prisma.task.findUnique({ where: { id: task.id } }));

  show('updated', await prisma.task.update({ where: { id: task.id }, data: { done: true } }));

  // Ten queries at once: up to ten client connections to pgtide, sharing its server connections.
  const many = await Promise.all(
    Array.from({ length: 10 }, (_, i) => prisma.task.create({ data: { title: `parallel ${i}` } })),
  );
  show('created in parallel', many.length);

  // A batch transaction and an interactive one: each runs on one server connection from BEGIN to COMMIT.
  const [open, finished] = await prisma.$transaction([
    prisma.task.count({ where: { done: false } }),
    prisma.task.count({ where: { done: true } }),
  ]);
  show('counted', { open, finished });
  const closed = await prisma.$transaction(async (tx) => {
    const { count } = await tx.task.updateMany({ where: { title: { startsWith: 'parallel' } }, data: { done: true } });
    return count;
  });
  show('closed in a transaction', closed);

  const { count } = await prisma.task.deleteMany({ where: { title: { startsWith: 'parallel' } } });
  show('deleted', { id: (await prisma.task.delete({ where: { id: task.id } })).id, parallel: count });
  show('remaining', await prisma.task.count());
} finally {
  await prisma.$disconnect();
}
