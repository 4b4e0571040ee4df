/**
 * A real PostgreSQL server for tests; the code lives in scripts/temp-postgres.ts,
 * which the benchmark uses too.
 */

export { postgresBinDir, postgresSkipReason, startPostgres, type PostgresOptions, type PostgresServer } from '../../scripts/temp-postgres';
