-- The table of prisma/schema.prisma, for a database without Prisma Migrate (`psql "$DATABASE_URL" -f prisma/init.sql`).
CREATE TABLE IF NOT EXISTS project (
    id   text PRIMARY KEY,
    name text NOT NULL
);
