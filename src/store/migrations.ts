/**
 * Numbered schema migrations. Migration N brings the schema from `user_version` N-1 to N.
 * Append only: never edit a migration that has shipped.
 */
export const migrations: readonly string[] = [
  // 1: initial schema (DESIGN §3)
  `
  CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
  );

  -- Master key versions known to this store. The key itself is never stored, only its fingerprint.
  CREATE TABLE keys (
    id          INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    retired_at  TEXT
  );

  CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
  );

  -- Per-tenant, per-channel switches. A missing row means the defaults (fallback on).
  CREATE TABLE tenant_channels (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    channel   TEXT NOT NULL,
    fallback  INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, channel)
  );

  CREATE TABLE provider_configs (
    id                 INTEGER PRIMARY KEY,
    tenant_id          TEXT REFERENCES tenants(id) ON DELETE CASCADE, -- NULL = system default
    channel            TEXT NOT NULL,
    kind               TEXT NOT NULL,
    name               TEXT NOT NULL,
    priority           INTEGER NOT NULL DEFAULT 100,
    enabled            INTEGER NOT NULL DEFAULT 1,
    settings           TEXT NOT NULL DEFAULT '{}',
    sealed_secrets     BLOB,
    secret_hints       TEXT NOT NULL DEFAULT '{}',
    key_id             INTEGER REFERENCES keys(id),
    health             TEXT NOT NULL DEFAULT 'unknown',
    health_detail      TEXT,
    last_verified_at   TEXT,
    last_verify_result TEXT,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
  );
  CREATE UNIQUE INDEX provider_configs_ref ON provider_configs (ifnull(tenant_id, ''), channel, name);

  CREATE TABLE templates (
    id         INTEGER PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    subject    TEXT,
    html       TEXT,
    text       TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (tenant_id, name)
  );

  CREATE TABLE domains (
    id          INTEGER PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    domain      TEXT NOT NULL,
    provider_id INTEGER REFERENCES provider_configs(id) ON DELETE SET NULL,
    external_id TEXT,
    records     TEXT NOT NULL DEFAULT '[]',
    status      TEXT NOT NULL DEFAULT 'pending',
    checked_at  TEXT,
    created_at  TEXT NOT NULL,
    UNIQUE (tenant_id, domain)
  );

  CREATE TABLE suppressions (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    channel    TEXT NOT NULL,
    address    TEXT NOT NULL,
    reason     TEXT NOT NULL,
    source     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, channel, address)
  );

  CREATE TABLE batches (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    channel         TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    input_path      TEXT NOT NULL,
    input_hash      TEXT NOT NULL,
    template_path   TEXT NOT NULL,
    template_hash   TEXT NOT NULL,
    template        TEXT NOT NULL, -- JSON {subject, body, html}: resume needs no files but the store
    columns         TEXT NOT NULL DEFAULT '[]',
    status          TEXT NOT NULL,
    total           INTEGER NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_expires_at TEXT,
    created_at      TEXT NOT NULL,
    started_at      TEXT,
    finished_at     TEXT
  );

  CREATE TABLE batch_items (
    batch_id    TEXT NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    row_no      INTEGER NOT NULL,
    line_no     INTEGER NOT NULL,
    recipient   TEXT NOT NULL,
    vars        TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending','sending','sent','failed','skipped','unknown')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    provider    TEXT,
    message_id  TEXT,
    fallback    INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (batch_id, row_no)
  ) WITHOUT ROWID;
  CREATE INDEX batch_items_state ON batch_items (batch_id, state, row_no);

  -- Every send attempt, successful or not.
  CREATE TABLE messages (
    id            INTEGER PRIMARY KEY,
    created_at    TEXT NOT NULL,
    tenant_id     TEXT NOT NULL,
    channel       TEXT NOT NULL,
    provider      TEXT NOT NULL,
    provider_kind TEXT NOT NULL,
    recipient     TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('sent','failed')),
    message_id    TEXT,
    error_kind    TEXT,
    error_code    TEXT,
    error         TEXT,
    fallback      INTEGER NOT NULL DEFAULT 0,
    attempt       INTEGER NOT NULL DEFAULT 1,
    batch_id      TEXT,
    row_no        INTEGER
  );
  CREATE INDEX messages_tenant_time ON messages (tenant_id, created_at);
  CREATE INDEX messages_batch ON messages (batch_id, row_no);

  CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    tenant_id TEXT,
    fields    TEXT NOT NULL DEFAULT '[]'
  );
  CREATE INDEX audit_log_tenant_time ON audit_log (tenant_id, at);
  `,
  // 2: domain authentication (issue 6). System defaults may own sender domains too (tenant_id NULL), so the
  // table is rebuilt without NOT NULL; the provider's kind is kept so a domain whose provider config was
  // removed still says which API it belongs to; `detail` holds the last check's one-line summary.
  `
  CREATE TABLE domains_v2 (
    id            INTEGER PRIMARY KEY,
    tenant_id     TEXT REFERENCES tenants(id) ON DELETE CASCADE, -- NULL = system default
    domain        TEXT NOT NULL,
    provider_id   INTEGER REFERENCES provider_configs(id) ON DELETE SET NULL,
    provider_kind TEXT,
    external_id   TEXT,
    records       TEXT NOT NULL DEFAULT '[]',
    status        TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending','verified','failed')),
    detail        TEXT,
    checked_at    TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT
  );
  INSERT INTO domains_v2 (id, tenant_id, domain, provider_id, external_id, records, status, checked_at, created_at, updated_at)
    SELECT id, tenant_id, domain, provider_id, external_id, records,
           CASE WHEN status IN ('pending','verified','failed') THEN status ELSE 'pending' END, checked_at, created_at, created_at
    FROM domains;
  DROP TABLE domains;
  ALTER TABLE domains_v2 RENAME TO domains;
  CREATE UNIQUE INDEX domains_owner_domain ON domains (ifnull(tenant_id, ''), domain);
  CREATE INDEX domains_provider ON domains (provider_id);
  `,
  `
  -- A bulk send changes every row's state twice (pending → sending → sent): an index on state cost two index
  -- updates per change (about 5 % of a SendGrid batch send). Its readers now scan the batch's rows by primary
  -- key, and a finished batch keeps its counts: JSON {rows, pending, …, byProvider, fallback}, written when a
  -- run ends or the batch is cancelled, read while the batch is done, interrupted or cancelled.
  DROP INDEX batch_items_state;
  ALTER TABLE batches ADD COLUMN stats TEXT;
  `,
  `
  -- Issue 11. Provider configs are authenticated as a whole: mac = HMAC-SHA-256 (64 hex digits) over the row's
  -- canonical form (src/crypto/config-mac.ts), under a key derived from the master key. Rows of an existing
  -- store get theirs on the first open with the key (core/config-auth.ts), which then records
  -- meta.config_macs = 'v1'; a store without provider configs has nothing to upgrade and records it now.
  ALTER TABLE provider_configs ADD COLUMN mac TEXT;
  INSERT INTO meta (key, value) SELECT 'config_macs', 'v1' WHERE NOT EXISTS (SELECT 1 FROM provider_configs);
  -- The audit log is append-only: rows are added, never changed or removed (removing a tenant keeps its entries).
  CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
  CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
  `,
  // Delivery status (issue 13). `events`: every provider event received by `events serve` or `events import`, once
  // per provider identity (`event_key`, e.g. sendgrid:<sg_event_id>), with the provider's own event as JSON.
  // `deliveries`: each sent message's delivery status (one row per provider message id and recipient: a SendGrid
  // request of many rows shares one id), its furthest status by rank, and flags for the report's rates.
  // `soft_bounces`: soft bounces counted towards a suppression with an expiry (`suppressions.expires_at`).
  // `messages_message_id`: a message found by its provider id (`message show`, events without correlation).
  `
  CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    event_key     TEXT NOT NULL UNIQUE,
    received_at   TEXT NOT NULL,
    occurred_at   TEXT,
    tenant_id     TEXT,
    channel       TEXT NOT NULL,
    provider      TEXT NOT NULL,
    provider_kind TEXT NOT NULL,
    type          TEXT NOT NULL,
    provider_type TEXT NOT NULL,
    recipient     TEXT,
    message_id    TEXT,
    batch_id      TEXT,
    row_no        INTEGER,
    detail        TEXT,
    payload       TEXT NOT NULL
  );
  CREATE INDEX events_message ON events (message_id, recipient) WHERE message_id IS NOT NULL;
  CREATE INDEX events_batch ON events (batch_id, row_no) WHERE batch_id IS NOT NULL;
  CREATE INDEX events_tenant_time ON events (tenant_id, received_at);

  CREATE TABLE deliveries (
    message_id TEXT NOT NULL,
    recipient  TEXT NOT NULL,
    tenant_id  TEXT,
    channel    TEXT NOT NULL,
    provider   TEXT NOT NULL,
    batch_id   TEXT,
    row_no     INTEGER,
    status     TEXT NOT NULL,
    rank       INTEGER NOT NULL,
    status_at  TEXT,
    delivered  INTEGER NOT NULL DEFAULT 0,
    bounced    INTEGER NOT NULL DEFAULT 0,
    complained INTEGER NOT NULL DEFAULT 0,
    events     INTEGER NOT NULL DEFAULT 0,
    first_at   TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (message_id, recipient)
  ) WITHOUT ROWID;
  CREATE INDEX deliveries_batch ON deliveries (batch_id, row_no) WHERE batch_id IS NOT NULL;
  CREATE INDEX deliveries_time ON deliveries (first_at);

  CREATE TABLE soft_bounces (
    tenant_id TEXT NOT NULL,
    channel   TEXT NOT NULL,
    address   TEXT NOT NULL,
    event_id  INTEGER NOT NULL,
    at        TEXT NOT NULL,
    PRIMARY KEY (tenant_id, channel, address, event_id)
  ) WITHOUT ROWID;

  ALTER TABLE suppressions ADD COLUMN expires_at TEXT;
  CREATE INDEX messages_message_id ON messages (message_id) WHERE message_id IS NOT NULL;
  `,
  // 6: the send engine of issue 10. `derived_key`: the key derived from the input (a derived-key batch's
  // `idempotency_key` may carry a suffix once an earlier batch of the same input left its window);
  // `key_expires_at`: when that derived key stops finding the finished batch (NULL: an explicit key, never);
  // `paused_reason`/`paused_at`: why and when a run paused (no provider of the route could take messages);
  // `batch_items.error_kind`: the error class of a failed row (recipient, render, …) for `batch retry`.
  `
  ALTER TABLE batches ADD COLUMN derived_key TEXT;
  ALTER TABLE batches ADD COLUMN key_expires_at TEXT;
  ALTER TABLE batches ADD COLUMN paused_reason TEXT;
  ALTER TABLE batches ADD COLUMN paused_at TEXT;
  ALTER TABLE batch_items ADD COLUMN error_kind TEXT;
  CREATE INDEX batches_derived_key ON batches (derived_key, created_at) WHERE derived_key IS NOT NULL;
  `,
  // 7: workers on several hosts (issue 14; used on PostgreSQL, the same tables here so both schemas match).
  // `batch_items.worker`: the worker a pending row is reserved to, or that sends it; `batch_workers`: one lease per
  // worker of a batch; `rate_grants`: shares of a provider's rate taken by workers (epoch ms, the database's clock).
  `
  ALTER TABLE batch_items ADD COLUMN worker TEXT;
  CREATE INDEX batch_items_worker ON batch_items (batch_id, worker) WHERE worker IS NOT NULL;
  CREATE TABLE batch_workers (
    batch_id         TEXT NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    worker           TEXT NOT NULL,
    lease_expires_at TEXT NOT NULL,
    joined_at        TEXT NOT NULL,
    PRIMARY KEY (batch_id, worker)
  );
  CREATE TABLE rate_grants (
    id         INTEGER PRIMARY KEY,
    rate_key   TEXT NOT NULL,
    batch_id   TEXT NOT NULL,
    worker     TEXT NOT NULL,
    n          INTEGER NOT NULL,
    granted_ms INTEGER NOT NULL,
    done_ms    INTEGER
  );
  CREATE INDEX rate_grants_key ON rate_grants (rate_key, done_ms);
  `,
  // 8: no index on `batch_items.worker` (PostgreSQL's migration 8 drops it so that a row's updates can be HOT;
  // here `worker` stays NULL, one process working a batch, so the index was empty): both schemas match.
  `
  DROP INDEX batch_items_worker;
  `,
];
