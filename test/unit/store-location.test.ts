// Choosing the store (issue 14): a path is a SQLite file, a postgres:// URL a PostgreSQL store shown without its
// password; a password inside a --store URL is refused (argv is public), the same URL in SWITCHBOARD_STORE is not.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { locateStore, resolveStore, resolveStorePath } from '../../src/store/db.js';
import { UsageError } from '../../src/errors.js';

describe('resolveStore', () => {
  it('takes a path as a SQLite file and the default under XDG_DATA_HOME', () => {
    expect(resolveStore('rel/sb.db', {})).toEqual({ backend: 'sqlite', path: path.resolve('rel/sb.db'), display: path.resolve('rel/sb.db') });
    expect(resolveStore(undefined, { XDG_DATA_HOME: '/x' })).toMatchObject({ backend: 'sqlite', path: '/x/switchboard/switchboard.db' });
  });

  it('takes a postgres:// or postgresql:// URL, shown without its password', () => {
    const loc = resolveStore(undefined, { SWITCHBOARD_STORE: 'postgresql://sb:s3cret@db.internal:5433/switchboard?sslmode=require&password=s3cret' });
    expect(loc).toEqual({
      backend: 'postgres',
      url: 'postgresql://sb:s3cret@db.internal:5433/switchboard?sslmode=require&password=s3cret',
      display: 'postgresql://sb@db.internal:5433/switchboard?sslmode=require',
    });
    expect(resolveStore('postgres://db.internal/sb', {})).toMatchObject({ backend: 'postgres', display: 'postgres://db.internal/sb' });
  });

  it("takes libpq's form without a host (a user on the default host or a Unix socket), shown as given", () => {
    expect(resolveStore('postgres://sb@/switchboard?host=/run/postgresql', {})).toEqual({
      backend: 'postgres',
      url: 'postgres://sb@/switchboard?host=/run/postgresql',
      display: 'postgres://sb@/switchboard?host=/run/postgresql',
    });
    expect(resolveStore(undefined, { SWITCHBOARD_STORE: 'postgresql://sb:s3cret@/switchboard' })).toMatchObject({ display: 'postgresql://sb@/switchboard' });
    expect(resolveStore('postgres:///switchboard?host=/run/postgresql&user=sb', {})).toMatchObject({ backend: 'postgres', display: 'postgres:///switchboard?host=/run/postgresql&user=sb' });
    expect(() => resolveStore('postgres://sb:s3cret@/switchboard', {})).toThrow(/^--store: a password inside the URL on the command line/);
  });

  it('refuses a password in a URL given with another flag (store copy --to), naming that flag', () => {
    expect(() => locateStore('postgres://sb:s3cret@db/sb', '--to')).toThrow(/^--to: a password inside the URL on the command line is visible to every user of this host; nothing was connected\. Give it in PGPASSWORD or ~\/\.pgpass$/);
    expect(locateStore('postgres://sb@db/sb', '--to')).toMatchObject({ backend: 'postgres', display: 'postgres://sb@db/sb' });
  });

  it('refuses a password in a --store URL (userinfo or query), other schemes, and a URL where a file is needed', () => {
    for (const url of ['postgres://sb:s3cret@db/sb', 'postgres://sb@db/sb?password=s3cret', 'postgres://sb:s3cret/+x@db:5432/sb']) {
      const err = (() => {
        try {
          resolveStore(url, {});
        } catch (e) {
          return e as Error;
        }
        return null;
      })();
      expect(err).toBeInstanceOf(UsageError);
      expect(err!.message).toMatch(/^--store: a password inside the URL on the command line is visible to every user of this host; nothing was connected/);
      expect(err!.message).not.toContain('s3cret');
    }
    expect(() => resolveStore('mysql://db/sb', {})).toThrow('--store: mysql:// URLs are not supported');
    expect(() => resolveStore(undefined, { SWITCHBOARD_STORE: 'postgres://[bad' })).toThrow('SWITCHBOARD_STORE: not a valid postgres:// URL');
    expect(() => resolveStorePath('postgres://db/sb', {})).toThrow('postgres://db/sb is a PostgreSQL store, not a SQLite file');
  });
});
