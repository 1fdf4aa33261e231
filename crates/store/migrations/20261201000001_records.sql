-- campaignd's records on PostgreSQL. Each record's body is the same versioned postcard envelope
-- sled stores (see src/store/codec.rs); the columns beside it are the keys, owners, expiries and
-- statuses that queries filter on.

CREATE TABLE counters (
    kind  text PRIMARY KEY,
    value bigint NOT NULL
);

CREATE TABLE tenants (
    id   bigint PRIMARY KEY,
    name text NOT NULL UNIQUE,
    body bytea NOT NULL
);

CREATE TABLE tokens (
    sha256    bytea PRIMARY KEY,
    tenant_id bigint NOT NULL,
    body      bytea NOT NULL
);

CREATE TABLE connections (
    tenant_id bigint NOT NULL,
    id        bigint NOT NULL,
    body      bytea NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE products (
    tenant_id bigint NOT NULL,
    id        bigint NOT NULL,
    sku       text NOT NULL,
    body      bytea NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, sku)
);

CREATE TABLE campaigns (
    tenant_id bigint NOT NULL,
    id        bigint NOT NULL,
    body      bytea NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE campaign_products (
    campaign_id   bigint NOT NULL,
    connection_id bigint NOT NULL,
    product_id    bigint NOT NULL,
    status        text NOT NULL,
    body          bytea NOT NULL,
    PRIMARY KEY (campaign_id, connection_id, product_id)
);

CREATE TABLE trackers (
    id          bigint PRIMARY KEY,
    tenant_id   bigint NOT NULL,
    campaign_id bigint NOT NULL,
    status      text NOT NULL,
    body        bytea NOT NULL
);
CREATE INDEX trackers_by_campaign ON trackers (campaign_id, id);

-- A campaign lock: held by one run (tracker) of one node (owner) until expires_at (ms).
CREATE TABLE locks (
    campaign_id bigint PRIMARY KEY,
    tracker_id  bigint NOT NULL,
    owner       text NOT NULL,
    expires_at  bigint NOT NULL
);

CREATE TABLE notifications (
    tenant_id bigint NOT NULL,
    id        bigint NOT NULL,
    body      bytea NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE webhooks (
    tenant_id bigint PRIMARY KEY,
    body      bytea NOT NULL
);

-- Webhook deliveries not yet accepted by their receiver.
CREATE TABLE outbox (
    id        bigint PRIMARY KEY,
    tenant_id bigint NOT NULL,
    body      bytea NOT NULL
);
