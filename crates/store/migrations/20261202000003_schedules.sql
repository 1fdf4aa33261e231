-- Campaign schedules: a campaign's dates and the steps its scheduler took. `version` is the
-- schedule's write count: a write names the version it read, so a step is recorded once even
-- when several nodes look at a due campaign together. `next_due_at` (ms) is when the next step
-- is due, NULL when none is.
CREATE TABLE schedules (
    campaign_id bigint PRIMARY KEY,
    tenant_id   bigint NOT NULL,
    version     bigint NOT NULL,
    next_due_at bigint,
    body        bytea NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_due_at) WHERE next_due_at IS NOT NULL;
