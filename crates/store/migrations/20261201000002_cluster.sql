-- What nodes sharing the database divide the work with.

-- One connection's part of one run; the run's tracker and lock are in trackers and locks.
CREATE TABLE work_items (
    tracker_id    bigint NOT NULL,
    connection_id bigint NOT NULL,
    done          boolean NOT NULL,
    body          bytea NOT NULL,
    PRIMARY KEY (tracker_id, connection_id)
);
CREATE INDEX work_items_open ON work_items (connection_id) WHERE NOT done;

-- A node's heartbeat: it is alive while expires_at (ms) is ahead.
CREATE TABLE nodes (
    id         text PRIMARY KEY,
    expires_at bigint NOT NULL
);

-- While a lease holds, its owner alone sends requests to the connection's account.
CREATE TABLE leases (
    connection_id bigint PRIMARY KEY,
    owner         text NOT NULL,
    expires_at    bigint NOT NULL
);
