-- The delivery ledger's SQL: every statement that moves a delivery, by name (loaded by bot/db/queries.py).
--
-- The status machine these statements implement is drawn in docs/architecture.md#the-delivery-status-machine.
-- Rules kept by every statement here:
--   * a claim is committed before any network I/O, and no lock is held across a Graph call;
--   * an outcome is written only by the claim that made the call: (id, claims) names that claim;
--   * statuses move forward only, by delivery_rank() (migration 0002), the one definition of the order;
--   * evidence that Meta accepted a send (a wamid, a status carrying our tracker) always wins: the row is
--     `sent` (or further) from then on, and a row with a wamid is never sent again;
--   * statements that lock several deliveries lock them in id order, so two of them can never deadlock.


-- ---------------------------------------------------------------------------------------------------------
-- Fan-out: an announcement's audience frozen into ledger rows, once.

-- name: fan_out_due
-- Scheduled announcements whose send time has come, oldest first.
SELECT id FROM announcement WHERE status = 'scheduled' AND send_at <= now() ORDER BY send_at, id LIMIT :n;

-- name: fan_out_lock
-- The announcement, locked, if it is still scheduled and still due. A PATCH that moves send_at into the future
-- either committed before this (the row is no longer due) or holds the lock (skipped; it is looked at again on
-- the next poll, when it is no longer due); a PATCH that comes after this waits, then finds it `dispatching`.
SELECT id, employer_id, audience, reminder_of FROM announcement
WHERE id = :id AND status = 'scheduled' AND send_at <= now()
FOR UPDATE SKIP LOCKED;

-- name: fan_out_insert
-- One row per audience member; ON CONFLICT makes a second fan-out of the same announcement a no-op. Employees
-- already inactive or opted out are recorded as skipped, with the reason. Each row goes out from the employer's
-- own number if it has one (`delivery_route`; the caller holds `employer_lock_share`, so a sender change waits).
INSERT INTO delivery (employer_id, announcement_id, employee_id, kind, status, skip_reason, next_attempt_at,
                      phone_number_id)
SELECT e.employer_id, :aid, e.id, 'announcement',
       CASE WHEN NOT e.active OR e.opted_out_at IS NOT NULL THEN 'skipped' ELSE 'pending' END,
       CASE WHEN NOT e.active THEN 'inactive' WHEN e.opted_out_at IS NOT NULL THEN 'opted_out' END,
       now(), r.own
FROM employee e
CROSS JOIN (SELECT delivery_route('announcement', CAST(:eid AS bigint), NULL) AS own) r
WHERE e.employer_id = :eid
  AND (
    (CAST(:all_ AS boolean) AND e.active)
    OR (CAST(:tags AS text[]) IS NOT NULL AND e.active AND e.tags && CAST(:tags AS text[]))
    OR (CAST(:ids AS bigint[]) IS NOT NULL AND e.id = ANY(CAST(:ids AS bigint[])))
  )
ON CONFLICT (announcement_id, employee_id) DO NOTHING;

-- name: employer_lock_share
-- Fan-out reads the employer's sender; a sender change (`employer_lock`) waits for it, and it for the change.
SELECT id FROM employer WHERE id = :e FOR SHARE;

-- name: employer_lock
SELECT id FROM employer WHERE id = :e FOR UPDATE;

-- name: fan_out_start
-- The announcement is dispatching from now on; its audience is frozen.
UPDATE announcement SET status = 'dispatching', dispatched_at = now(), updated_at = now() WHERE id = :id;

-- name: complete_finished
-- A dispatching announcement with nothing pending or being sent is complete.
UPDATE announcement a SET status = 'completed', completed_at = now(), updated_at = now()
WHERE a.status = 'dispatching'
  AND NOT EXISTS (SELECT 1 FROM delivery d WHERE d.announcement_id = a.id AND d.status IN ('pending', 'sending'))
RETURNING a.id;


-- ---------------------------------------------------------------------------------------------------------
-- The sender: one token bucket row per sending number, shared by every worker, and the sender-wide state
-- (back-off, pause) every worker obeys.

-- name: budget_ensure
INSERT INTO send_budget (phone_number_id, tokens, refilled_at) VALUES (:p, 0, clock_timestamp())
ON CONFLICT (phone_number_id) DO NOTHING;

-- name: budget_take
-- Up to :want tokens. The row lock serialises takers, so N workers together never exceed :rate (plus one
-- burst). `blocked_for` tells a taker that got nothing because of a back-off or pause how long asking again
-- is pointless.
UPDATE send_budget b SET tokens = x.avail - x.take, refilled_at = x.at
FROM (
  SELECT z.*, CASE WHEN z.blocked_until > z.at THEN 0 ELSE LEAST(floor(z.avail)::int, :want) END AS take
  FROM (
    SELECT y.phone_number_id, y.at, y.blocked_until,
           LEAST(:burst, y.tokens + :rate * EXTRACT(EPOCH FROM y.at - y.refilled_at)) AS avail
    FROM (
      SELECT phone_number_id, tokens, refilled_at, clock_timestamp() AS at,
             GREATEST(COALESCE(backoff_until, '-infinity'), COALESCE(paused_until, '-infinity')) AS blocked_until
      FROM send_budget WHERE phone_number_id = :p FOR UPDATE
    ) y
  ) z
) x
WHERE b.phone_number_id = x.phone_number_id
RETURNING x.take,
  CASE WHEN x.blocked_until > x.at THEN EXTRACT(EPOCH FROM x.blocked_until - x.at)::float8 ELSE 0 END AS blocked_for;

-- name: budget_give_back
-- Tokens a taker could not use (fewer rows were due) go back, so they are not lost to everyone else.
UPDATE send_budget SET tokens = LEAST(:burst, tokens + :n) WHERE phone_number_id = :p;

-- name: sender_back_off
-- A sender-wide condition (throttling, Graph unreachable): every worker stops sending from this number.
-- The first failure after a quiet spell starts a back-off of :base * 2^step seconds (capped); failures of the
-- same wave (sends that were already in flight) do not lengthen it, unless Graph asked for longer. A send the
-- caller saw go through after the last back-off ended (:ok_at) proves the number works: the escalation starts
-- again from :base (the success's own write may not have reached the database yet: outcomes are batched).
UPDATE send_budget SET
  backoff_step = CASE WHEN backoff_until > now() THEN backoff_step
                      WHEN CAST(:ok_at AS timestamptz) > backoff_until THEN 1
                      ELSE backoff_step + 1 END,
  backoff_until = CASE
    WHEN backoff_until > now()
      THEN GREATEST(backoff_until, now() + make_interval(secs => COALESCE(CAST(:retry_after AS float8), 0)))
    ELSE now() + make_interval(secs => COALESCE(
      CAST(:retry_after AS float8), LEAST(CAST(:cap AS float8), :base * power(2,
        CASE WHEN CAST(:ok_at AS timestamptz) > backoff_until THEN 0 ELSE LEAST(backoff_step, 30) END))))
  END,
  backoff_reason = :reason
WHERE phone_number_id = :p
RETURNING EXTRACT(EPOCH FROM backoff_until - now())::float8 AS seconds;

-- name: sender_pause
-- Our account, token or number is unusable: nobody sends from it until :d seconds have passed.
UPDATE send_budget SET paused_until = now() + make_interval(secs => :d), pause_reason = :reason
WHERE phone_number_id = :p;

-- name: sender_recovered
-- A send went through: forget the back-off's escalation and any expired pause. Matches no row (and locks
-- nothing) while the sender is healthy, which is nearly always.
UPDATE send_budget SET backoff_step = 0, backoff_reason = NULL, paused_until = NULL, pause_reason = NULL
WHERE phone_number_id = :p
  AND (backoff_step > 0 OR backoff_reason IS NOT NULL OR pause_reason IS NOT NULL)
  AND COALESCE(backoff_until, '-infinity') <= now() AND COALESCE(paused_until, '-infinity') <= now();

-- name: sender_state
-- What an operator needs to know about the number: is it paused or backed off, until when, and why.
SELECT CASE WHEN paused_until > now() THEN paused_until END AS paused_until,
       CASE WHEN paused_until > now() THEN pause_reason END AS pause_reason,
       CASE WHEN backoff_until > now() THEN backoff_until END AS backoff_until,
       CASE WHEN backoff_until > now() THEN backoff_reason END AS backoff_reason
FROM send_budget WHERE phone_number_id = :p;


-- ---------------------------------------------------------------------------------------------------------
-- Claim and outcomes.

-- name: claim
-- Moves up to :n due pending rows of one number to `sending` under a lease of :lease seconds, committed before
-- any network I/O. Rows wait with the number they go out from (NULL: the shared one; :route is '' for it), so
-- each number's claim is an index scan of its own rows (`ix_delivery_pending_route`). The number is checked
-- again here, at claim time: a row whose employer changed its sender since is moved to its new number, left
-- pending, and not returned. A claimed row records the number it goes out from (:pnid). The employee is looked
-- at again too: an announcement to someone who opted out or was deactivated since fan-out is `skipped` with the
-- reason, not sent (bot replies still go: a STOP is answered). Nothing goes to an erased employee: their waiting
-- rows were cancelled, and one that raced the erasure is skipped here.
WITH due AS (
  SELECT id FROM delivery
  WHERE status = 'pending' AND next_attempt_at <= now() AND COALESCE(phone_number_id, '') = :route
  ORDER BY next_attempt_at, id
  LIMIT :n
  FOR UPDATE SKIP LOCKED
),
checked AS (
  SELECT due.id,
         COALESCE(delivery_route(d.kind, d.employer_id, d.phone_number_id), '') AS route,
         CASE WHEN e.erased_at IS NOT NULL THEN 'erased'
              WHEN d.kind <> 'announcement' THEN NULL
              WHEN NOT e.active THEN 'inactive'
              WHEN e.opted_out_at IS NOT NULL THEN 'opted_out' END AS skip
  FROM due JOIN delivery d ON d.id = due.id JOIN employee e ON e.id = d.employee_id
),
claimed AS (
  UPDATE delivery d SET
    status = CASE WHEN c.route <> :route THEN 'pending' WHEN c.skip IS NULL THEN 'sending' ELSE 'skipped' END,
    skip_reason = CASE WHEN c.route <> :route THEN NULL ELSE c.skip END,
    claimed_by = CASE WHEN c.route <> :route THEN d.claimed_by ELSE :me END,
    claimed_at = CASE WHEN c.route <> :route THEN d.claimed_at ELSE now() END,
    claims = d.claims + CASE WHEN c.route <> :route THEN 0 ELSE 1 END,
    attempts = d.attempts + CASE WHEN c.route = :route AND c.skip IS NULL THEN 1 ELSE 0 END,
    lease_until = CASE WHEN c.route = :route AND c.skip IS NULL
                       THEN clock_timestamp() + make_interval(secs => :lease) END,
    phone_number_id = CASE WHEN c.route <> :route THEN NULLIF(c.route, '')
                           WHEN c.skip IS NULL THEN CAST(:pnid AS text) ELSE d.phone_number_id END,
    updated_at = now()
  FROM checked c
  WHERE d.id = c.id
  RETURNING d.id, d.kind, d.status, d.announcement_id, d.employee_id, d.body, d.payload, d.attempts, d.claims,
            d.recipient_user_id
)
SELECT c.id, c.kind, c.status, c.announcement_id, c.attempts, c.claims, e.phone, c.recipient_user_id, c.payload,
       COALESCE(a.message, c.body) AS text, a.template, e.language AS employee_language,
       er.language AS employer_language
FROM claimed c
JOIN employee e ON e.id = c.employee_id
JOIN employer er ON er.id = e.employer_id
LEFT JOIN announcement a ON a.id = c.announcement_id
WHERE c.status <> 'pending';

-- name: record_sent
-- Meta accepted these sends: (delivery id, wamid, the recipient's business-scoped user id when the answer named
-- it, the template translation used, Meta's `message_status` when not plain "accepted") each, sent from the
-- number the claim recorded on the row. A wamid is proof, so it moves the row to `sent` from wherever it waits:
-- still `sending`, reaped to `unknown` because this write came after the lease, queued again by resend-unknown,
-- even being sent again by a newer claim or skipped at that claim (the employee got this message before opting
-- out). The outcome writes of any other claim of the row are then no-ops: they only touch a row without a wamid.
-- A row Meta's statuses moved further keeps its status and gains the wamid. A user id in the answer to our send
-- to an employee is theirs.
WITH v AS (
  SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:wamids AS text[]), CAST(:user_ids AS text[]),
                       CAST(:languages AS text[]), CAST(:message_statuses AS text[]))
    AS v(id, wamid, user_id, language, message_status)
),
locked AS (
  SELECT d.id FROM delivery d JOIN v ON v.id = d.id ORDER BY d.id FOR UPDATE OF d
),
sent AS (
  UPDATE delivery d SET
    status = CASE WHEN delivery_rank(d.status) = 0 THEN 'sent' ELSE d.status END,
    wamid = COALESCE(d.wamid, v.wamid),
    language = COALESCE(d.language, v.language),
    message_status = COALESCE(d.message_status, v.message_status),
    sent_at = CASE WHEN delivery_rank(d.status) = 0 THEN COALESCE(d.sent_at, now()) ELSE d.sent_at END,
    error_code = CASE WHEN delivery_rank(d.status) = 0 THEN NULL ELSE d.error_code END,
    error_title = CASE WHEN delivery_rank(d.status) = 0 THEN NULL ELSE d.error_title END,
    lease_until = NULL,
    updated_at = now()
  FROM v JOIN locked l ON l.id = v.id
  WHERE d.id = v.id
  RETURNING d.id, d.employee_id, d.phone_number_id
)
INSERT INTO employee_user_id (employee_id, phone_number_id, user_id, learned_from)
SELECT DISTINCT s.employee_id, COALESCE(s.phone_number_id, CAST(:default AS text)), v.user_id, 'send'
FROM sent s JOIN v ON v.id = s.id
WHERE v.user_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM employee e WHERE e.id = s.employee_id AND e.erased_at IS NOT NULL)
ON CONFLICT (employee_id, phone_number_id, user_id) DO NOTHING;

-- name: record_retry
-- Provably not accepted: back to `pending`, due after :delay seconds, keeping why. :spent says whether this
-- try counts against the recipient's attempts (only recipient-specific errors do; a sender-wide outage or a
-- pause gives the attempt back). A cancelled announcement's row is cancelled instead.
UPDATE delivery d SET
  status = CASE WHEN a.cancelled THEN 'cancelled' ELSE 'pending' END,
  cancelled_at = CASE WHEN a.cancelled THEN now() ELSE d.cancelled_at END,
  phone_number_id = delivery_route(d.kind, d.employer_id, d.phone_number_id),
  claimed_by = NULL,
  lease_until = NULL,
  next_attempt_at = now() + make_interval(secs => :delay),
  attempts = d.attempts - CASE WHEN CAST(:spent AS boolean) THEN 0 ELSE 1 END,
  error_code = :code,
  error_title = :title,
  updated_at = now()
FROM (SELECT EXISTS (
        SELECT 1 FROM delivery x JOIN announcement y ON y.id = x.announcement_id
        WHERE x.id = :id AND y.status = 'cancelled') AS cancelled) a
WHERE d.id = :id AND d.claims = :claim AND d.status IN ('sending', 'unknown') AND d.wamid IS NULL;

-- name: record_failed
-- Definitively rejected (or a recipient's attempts are used up): `failed`, with Graph's code and title.
UPDATE delivery SET status = 'failed', error_code = :code, error_title = :title, failed_at = now(),
  lease_until = NULL, updated_at = now()
WHERE id = :id AND claims = :claim AND status IN ('sending', 'unknown') AND wamid IS NULL;

-- name: record_unknown
-- Ambiguous (a timeout, a 5xx, a lost connection after the request left): `unknown`, with why, never retried
-- automatically. A row the reaper already made `unknown` gets the more precise reason.
UPDATE delivery SET status = 'unknown', unknown_at = COALESCE(unknown_at, now()), error_code = :code,
  error_title = :title, lease_until = NULL, updated_at = now()
WHERE id = :id AND claims = :claim AND status IN ('sending', 'unknown');


-- ---------------------------------------------------------------------------------------------------------
-- Liveness: workers' heartbeats and the reaper.

-- name: worker_heartbeat
-- The worker says it is alive until :ttl seconds from now (its own JEM_DISPATCHER_STALE_AFTER), so every
-- reaper judges it by the same stored expiry.
INSERT INTO worker (id, hostname, pid, heartbeat_at, expires_at)
VALUES (:id, :host, :pid, now(), now() + make_interval(secs => :ttl))
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), expires_at = EXCLUDED.expires_at, stopped_at = NULL;

-- name: worker_stopped
UPDATE worker SET stopped_at = now() WHERE id = :id;

-- name: reap
-- A claim whose lease has expired, or whose worker stopped or went silent, becomes `unknown`: it may have
-- been sent, so it is never put back to `pending`. A wamid or a status carrying our tracker settles it later.
UPDATE delivery d SET
  status = 'unknown',
  unknown_at = now(),
  error_code = NULL,
  error_title = CASE WHEN d.lease_until < now()
    THEN 'no outcome was recorded before the claim''s lease expired; it may have been sent'
    ELSE 'the worker sending it stopped before recording the answer; it may have been sent' END,
  updated_at = now()
WHERE d.status = 'sending'
  AND (d.lease_until < now()
       OR NOT EXISTS (SELECT 1 FROM worker w
                      WHERE w.id = d.claimed_by AND w.stopped_at IS NULL AND w.expires_at > now()));

-- name: release_orphans
-- Rows this worker claimed but is not sending: a claim whose commit succeeded although the worker saw it fail
-- (the connection dropped during COMMIT). Only the worker itself can know that no request left for them.
UPDATE delivery SET status = 'pending', claimed_by = NULL, lease_until = NULL, attempts = attempts - 1,
  phone_number_id = delivery_route(kind, employer_id, phone_number_id), updated_at = now()
WHERE status = 'sending' AND claimed_by = :me AND NOT (id = ANY(CAST(:keep AS bigint[])))
RETURNING id;

-- name: purge_workers
-- Workers stopped or silent for :days days are forgotten (their rows were reaped long ago).
DELETE FROM worker WHERE COALESCE(stopped_at, expires_at, heartbeat_at) < now() - make_interval(days => :days);


-- ---------------------------------------------------------------------------------------------------------
-- Operator actions.

-- name: announcement_lock
-- The employer's announcement, locked: cancel and resend serialise with fan-out through this lock.
SELECT status FROM announcement WHERE id = :id AND employer_id = :e FOR UPDATE;

-- name: announcement_cancel
UPDATE announcement SET status = 'cancelled', cancelled_at = now(), updated_at = now() WHERE id = :id;

-- name: cancel_pending
-- What waits is cancelled; what is being sent or was sent stays as it is.
UPDATE delivery SET status = 'cancelled', cancelled_at = now(), updated_at = now()
WHERE announcement_id = :id AND kind = 'announcement' AND status = 'pending';

-- name: resend_unknown
-- The operator's explicit decision: `unknown` rows without a wamid go back to `pending`. A row with a wamid
-- was accepted by Meta and is never resent.
UPDATE delivery SET status = 'pending', next_attempt_at = now(), resend_count = resend_count + 1,
  phone_number_id = delivery_route(kind, employer_id, phone_number_id),
  error_code = NULL, error_title = NULL, claimed_by = NULL, claimed_at = NULL, lease_until = NULL,
  updated_at = now()
WHERE announcement_id = :id AND kind = 'announcement' AND status = 'unknown' AND wamid IS NULL;

-- name: announcement_reopen
UPDATE announcement SET status = 'dispatching', completed_at = NULL, updated_at = now() WHERE id = :id;

-- name: resend_record
INSERT INTO resend_request (employer_id, announcement_id, api_token_id, deliveries)
VALUES (:e, :id, :t, :n) RETURNING requested_at;


-- ---------------------------------------------------------------------------------------------------------
-- Meta's evidence: statuses and employees' replies.

-- name: apply_statuses
-- Meta's statuses, stored and applied in ONE statement (for a body of statuses alone, nearly every body Meta
-- sends, that is one round trip and one implicit transaction). Each event's dedup key (`st:<wamid>:<status>`)
-- is inserted in key order; only events whose key is new are applied, forward only. An event is matched by
-- its wamid, else by the delivery id in our authenticated tracker (:tids, already verified), but only for a
-- row we really sent (attempts > 0) whose outcome we do not know yet (`sending`, `unknown`). Several statuses
-- of one delivery are folded into one move (the highest rank wins; each time keeps its earliest value). A
-- matched row is one Meta accepted, so `cancelled` and `skipped` (rank 0) move on too: the ledger tells the
-- truth. The insert runs first (the update needs its RETURNING), so locks are taken keys first, in key
-- order, then deliveries in id order: two bodies with the same events in any order never deadlock.
WITH ev AS (
  SELECT * FROM unnest(CAST(:keys AS text[]), CAST(:payloads AS text[]), CAST(:wamids AS text[]),
                       CAST(:statuses AS text[]), CAST(:ts AS timestamptz[]), CAST(:tids AS bigint[]),
                       CAST(:codes AS int[]), CAST(:titles AS text[]), CAST(:user_ids AS text[]),
                       CAST(:pnids AS text[]))
    AS ev(key, payload, wamid, status, ts, tid, code, title, user_id, pnid)
),
new AS (
  INSERT INTO webhook_event (key, kind, payload)
  SELECT key, 'status', CAST(payload AS jsonb) FROM ev ORDER BY key
  ON CONFLICT (key) DO NOTHING
  RETURNING key
),
fresh AS (
  SELECT DISTINCT ON (ev.key) ev.* FROM ev JOIN new ON new.key = ev.key
  WHERE ev.wamid IS NOT NULL AND ev.status IN ('sent', 'delivered', 'read', 'failed')
),
matched AS (
  SELECT COALESCE(
           (SELECT x.id FROM delivery x WHERE x.wamid = fresh.wamid),
           (SELECT x.id FROM delivery x
            WHERE x.id = fresh.tid AND x.attempts > 0 AND x.status IN ('sending', 'unknown')
              AND (x.wamid IS NULL OR x.wamid = fresh.wamid))) AS id,
         fresh.*
  FROM fresh
),
folded AS (
  SELECT id,
         (array_agg(status ORDER BY delivery_rank(status) DESC))[1] AS top_status,
         max(delivery_rank(status)) AS top_rank,
         (array_agg(wamid ORDER BY ts))[1] AS wamid,
         min(ts) FILTER (WHERE status = 'sent') AS sent_ts,
         min(ts) FILTER (WHERE status = 'delivered') AS delivered_ts,
         min(ts) FILTER (WHERE status = 'read') AS read_ts,
         min(ts) FILTER (WHERE status = 'failed') AS failed_ts,
         (array_agg(code ORDER BY ts) FILTER (WHERE status = 'failed'))[1] AS code,
         (array_agg(title ORDER BY ts) FILTER (WHERE status = 'failed'))[1] AS title
  FROM matched WHERE id IS NOT NULL GROUP BY id
),
locked AS (
  SELECT d.id FROM delivery d JOIN folded f ON f.id = d.id ORDER BY d.id FOR UPDATE OF d
),
applied AS (
  UPDATE delivery d SET
    wamid = COALESCE(d.wamid, f.wamid),
    status = CASE WHEN delivery_rank(d.status) < f.top_rank THEN f.top_status ELSE d.status END,
    sent_at = LEAST(d.sent_at, f.sent_ts),
    delivered_at = LEAST(d.delivered_at, f.delivered_ts),
    read_at = LEAST(d.read_at, f.read_ts),
    failed_at = LEAST(d.failed_at, f.failed_ts),
    error_code = CASE WHEN delivery_rank(d.status) < f.top_rank
                      THEN CASE WHEN f.top_status = 'failed' THEN f.code END ELSE d.error_code END,
    error_title = CASE WHEN delivery_rank(d.status) < f.top_rank
                       THEN CASE WHEN f.top_status = 'failed' THEN f.title END ELSE d.error_title END,
    lease_until = NULL,
    updated_at = now()
  FROM folded f JOIN locked l ON l.id = f.id
  WHERE d.id = f.id
  RETURNING d.id, d.employee_id
),
-- A status of our own send naming the recipient's business-scoped user id is proof that this id is that
-- employee's (docs/whatsapp.md#business-scoped-user-ids). Read from `applied`, so these rows are written after
-- the deliveries are locked, in the same order by every body.
learned AS (
  INSERT INTO employee_user_id (employee_id, phone_number_id, user_id, learned_from)
  SELECT DISTINCT a.employee_id, m.pnid, m.user_id, 'status'
  FROM applied a JOIN matched m ON m.id = a.id
  WHERE m.user_id IS NOT NULL AND m.pnid IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM employee e WHERE e.id = a.employee_id AND e.erased_at IS NOT NULL)
  ON CONFLICT (employee_id, phone_number_id, user_id) DO NOTHING
  RETURNING id
)
SELECT (SELECT array_agg(key) FROM new) AS new_keys,
       (SELECT count(*) FROM fresh) AS fresh,
       (SELECT count(*) FROM applied) AS applied,
       (SELECT count(*) FROM learned) AS learned;

-- name: acknowledge
-- The employee answered (a tap, or a reply quoting the announcement): counted once. A reply proves the
-- message was read, so the status moves forward to `read` too (never backwards).
UPDATE delivery SET
  acknowledged_at = COALESCE(acknowledged_at, now()),
  status = CASE WHEN delivery_rank(status) < delivery_rank('read') AND status NOT IN ('cancelled', 'skipped')
                THEN 'read' ELSE status END,
  read_at = COALESCE(read_at, now()),
  lease_until = NULL,
  updated_at = now()
WHERE id = :id AND kind = 'announcement' AND status NOT IN ('cancelled', 'skipped')
RETURNING id;

-- name: queue_reply
-- A bot reply (STOP/START/HELP answer, the question which employer a message is for) is a delivery too;
-- reply_key makes a redelivered webhook a no-op. :recipient_user_id is set when the person wrote without their
-- number: the reply goes to their user id. :pnid is the employer's own number they wrote to (NULL: the shared
-- one): the reply goes out from it. :payload, when set, is an interactive message sent instead of the text.
INSERT INTO delivery (employer_id, employee_id, kind, body, reply_key, status, recipient_user_id, phone_number_id,
                      payload)
VALUES (:employer_id, :employee_id, 'reply', :body, :reply_key, 'pending', :recipient_user_id, :pnid,
        CAST(:payload AS jsonb))
ON CONFLICT (reply_key) DO NOTHING
RETURNING id;


-- ---------------------------------------------------------------------------------------------------------
-- Reading the ledger.

-- name: delivery_counts
-- Each delivery once, under its current status (the statuses add up to `total`).
SELECT announcement_id,
       count(*) AS total,
       count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) FILTER (WHERE status = 'sending') AS sending,
       count(*) FILTER (WHERE status = 'sent') AS sent,
       count(*) FILTER (WHERE status = 'delivered') AS delivered,
       count(*) FILTER (WHERE status = 'read') AS read,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'unknown') AS unknown,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
       count(*) FILTER (WHERE status = 'skipped') AS skipped,
       count(*) FILTER (WHERE acknowledged_at IS NOT NULL) AS acknowledged
FROM delivery
WHERE kind = 'announcement' AND announcement_id = ANY(CAST(:ids AS bigint[]))
GROUP BY announcement_id;

-- name: dispatch_backlog
SELECT status, count(*) AS n FROM delivery WHERE status IN ('pending', 'sending') GROUP BY status;


-- ---------------------------------------------------------------------------------------------------------
-- Installation secrets (the tracker's key).

-- name: secret_ensure
INSERT INTO server_secret (name, value) VALUES (:name, :value) ON CONFLICT (name) DO NOTHING;

-- name: secret_get
SELECT value FROM server_secret WHERE name = :name;


-- ---------------------------------------------------------------------------------------------------------
-- Webhook bookkeeping.

-- name: webhook_dedup
-- Every event of one webhook body in one statement, in key order: two bodies carrying the same events in any
-- order wait on each other's keys in the same order, so they can never deadlock. Returns the keys that are
-- new; an event whose key is already there (Meta redelivered it) is not applied again.
INSERT INTO webhook_event (key, kind, payload)
SELECT v.key, v.kind, CAST(v.payload AS jsonb)
FROM unnest(CAST(:keys AS text[]), CAST(:kinds AS text[]), CAST(:payloads AS text[])) AS v(key, kind, payload)
ORDER BY v.key
ON CONFLICT (key) DO NOTHING
RETURNING key;


-- ---------------------------------------------------------------------------------------------------------
-- Tenancy: tokens and employers. Every query below that reads an employer's data is scoped by its id.

-- name: token_lookup
-- The lookup is by hash through a unique index: no timing signal about other tokens' values.
SELECT t.id, t.employer_id, e.timezone, t.last_used_at FROM api_token t JOIN employer e ON e.id = t.employer_id
WHERE t.token_hash = :h AND t.revoked_at IS NULL;

-- name: token_touch
-- `last_used_at` is kept to the minute: the caller writes only when the lookup saw it a minute old or more, and
-- the condition here makes concurrent requests at that moment write once.
UPDATE api_token SET last_used_at = now()
WHERE id = :id AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute');

-- name: employer_get
SELECT id, slug, name, timezone, language FROM employer WHERE id = :id;


-- ---------------------------------------------------------------------------------------------------------
-- Employees.

-- name: employee_upsert
-- Upsert by phone within the employer, many rows at once (an import) or one. One lock order for every
-- import: two imports of overlapping rows in different orders would otherwise deadlock. Opt-out is the
-- employee's own choice (STOP), so an upsert never touches opted_out_at.
-- A field a row leaves out keeps the employee's value. `excluded` has only the table's columns, so the row says
-- "not sent" with a value no sent one can be (a name is never blank, a tag never null): name '' and tags {NULL}.
-- A new employee made from such a row comes back `unnamed` (the caller refuses it: 422, nothing committed) or
-- `untagged` (employee_untagged gives it no tags, in the same transaction).
INSERT INTO employee (employer_id, phone, name, tags)
SELECT :employer_id, r.phone, COALESCE(r.name, ''),
       CASE WHEN r.tags IS NULL THEN '{NULL}'::text[] ELSE ARRAY(SELECT jsonb_array_elements_text(r.tags)) END
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(phone text, name text, tags jsonb)
ORDER BY r.phone
ON CONFLICT (employer_id, phone) DO UPDATE
   SET name = CASE WHEN excluded.name = '' THEN employee.name ELSE excluded.name END,
       tags = CASE WHEN excluded.tags = '{NULL}'::text[] THEN employee.tags ELSE excluded.tags END,
       active = true, deactivated_at = NULL, updated_at = now()
RETURNING id, phone, (xmax = 0) AS created, name = '' AS unnamed, tags = '{NULL}'::text[] AS untagged;

-- name: employee_phones_known
-- Which of these phones an employee of the employer has (an upsert row without a name may only update one).
SELECT phone FROM employee WHERE employer_id = :e AND phone = ANY(CAST(:phones AS text[]));

-- name: employee_untagged
-- New employees whose upsert row sent no tags (employee_upsert): none.
UPDATE employee SET tags = '{}' WHERE id = ANY(CAST(:ids AS bigint[])) AND tags = '{NULL}'::text[];

-- name: employee_languages
-- The languages sent with an upsert or import (an employee whose row did not send one keeps theirs).
UPDATE employee e SET language = v.language
FROM unnest(CAST(:phones AS text[]), CAST(:languages AS text[])) AS v(phone, language)
WHERE e.employer_id = :e AND e.phone = v.phone AND e.language IS DISTINCT FROM v.language;

-- name: employee_get
-- `bsuid_known`: whether a business-scoped user id is known for the employee (never the id itself).
SELECT id, phone, name, tags, active, opted_out_at, created_at, updated_at, language,
       EXISTS (SELECT 1 FROM employee_user_id u WHERE u.employee_id = employee.id AND u.superseded_at IS NULL) AS bsuid_known
FROM employee WHERE id = :id AND employer_id = :e AND erased_at IS NULL;

-- name: employee_count
-- How many employees match the filters (all pages): clients preview an audience with it. Erased employees are
-- tombstones for the ledger, never listed.
SELECT count(*) FROM employee
WHERE employer_id = :e AND erased_at IS NULL
  AND (CAST(:tags AS text[]) IS NULL OR tags && CAST(:tags AS text[]))
  AND (CAST(:needle AS text) IS NULL OR name ILIKE :needle OR phone LIKE :phone_needle)
  AND (CAST(:include_inactive AS boolean) OR active)
  AND (CAST(:opted_out AS boolean) IS NULL OR (opted_out_at IS NOT NULL) = CAST(:opted_out AS boolean));

-- name: employee_page
-- The same filters, newest first, one page (limit + 1 rows, so the caller knows whether another exists).
SELECT id, phone, name, tags, active, opted_out_at, created_at, updated_at, language,
       EXISTS (SELECT 1 FROM employee_user_id u WHERE u.employee_id = employee.id AND u.superseded_at IS NULL) AS bsuid_known
FROM employee
WHERE employer_id = :e AND erased_at IS NULL
  AND (CAST(:tags AS text[]) IS NULL OR tags && CAST(:tags AS text[]))
  AND (CAST(:needle AS text) IS NULL OR name ILIKE :needle OR phone LIKE :phone_needle)
  AND (CAST(:include_inactive AS boolean) OR active)
  AND (CAST(:opted_out AS boolean) IS NULL OR (opted_out_at IS NOT NULL) = CAST(:opted_out AS boolean))
  AND (CAST(:after AS bigint) IS NULL OR id < :after)
ORDER BY id DESC
LIMIT :n;

-- name: employee_patch
-- Only the fields given change (:set_<field> says which).
UPDATE employee SET
  phone = CASE WHEN :set_phone THEN :phone ELSE phone END,
  name = CASE WHEN :set_name THEN :name ELSE name END,
  tags = CASE WHEN :set_tags THEN CAST(:tags AS text[]) ELSE tags END,
  active = CASE WHEN :set_active THEN CAST(:active AS boolean) ELSE active END,
  language = CASE WHEN :set_language THEN CAST(:language AS text) ELSE language END,
  deactivated_at = CASE WHEN NOT :set_active THEN deactivated_at
                        WHEN CAST(:active AS boolean) THEN NULL ELSE now() END,
  updated_at = now()
WHERE id = :id AND employer_id = :e AND erased_at IS NULL
RETURNING id, phone, name, tags, active, opted_out_at, created_at, updated_at, language,
          EXISTS (SELECT 1 FROM employee_user_id u WHERE u.employee_id = employee.id AND u.superseded_at IS NULL) AS bsuid_known;

-- name: employee_deactivate
-- Deactivated, never deleted: the ledger's history keeps pointing at the employee.
UPDATE employee SET active = false, deactivated_at = now(), updated_at = now()
WHERE id = :id AND employer_id = :e AND active;

-- name: employees_known
-- Which of these ids are the employer's employees (an audience may only name its own).
SELECT id FROM employee WHERE employer_id = :e AND id = ANY(CAST(:ids AS bigint[])) AND erased_at IS NULL;


-- ---------------------------------------------------------------------------------------------------------
-- Announcements.

-- name: announcement_insert
-- Scheduled; the dispatcher fans it out at send time. :ra (`remind_after`, seconds) makes a reminder at completion.
INSERT INTO announcement (employer_id, message, send_at, status, audience, created_by_token_id, template,
                          remind_after_seconds)
VALUES (:e, :m, :s, 'scheduled', CAST(:a AS jsonb), :t, CAST(:tpl AS jsonb), CAST(:ra AS integer))
RETURNING id, message, send_at, status, audience, created_at, dispatched_at, completed_at, cancelled_at, template,
          reminder_of, remind_after_seconds;

-- name: announcement_get
SELECT id, message, send_at, status, audience, created_at, dispatched_at, completed_at, cancelled_at, template,
       reminder_of, remind_after_seconds
FROM announcement WHERE id = :id AND employer_id = :e;

-- name: announcement_exists
SELECT 1 FROM announcement WHERE id = :id AND employer_id = :e;

-- name: announcement_page
-- Newest first, limit + 1 rows.
SELECT id, message, send_at, status, audience, created_at, dispatched_at, completed_at, cancelled_at, template,
       reminder_of, remind_after_seconds
FROM announcement
WHERE employer_id = :e
  AND (CAST(:status AS text) IS NULL OR status = :status)
  AND (CAST(:after AS bigint) IS NULL OR id < :after)
ORDER BY id DESC
LIMIT :n;

-- name: announcement_patch
-- Only while `scheduled`: fan-out moves it to `dispatching` under the same row lock, so once it has
-- started no row matches (409). Only the fields given change (:set_<field> says which).
UPDATE announcement SET
  message = CASE WHEN :set_message THEN :m ELSE message END,
  template = CASE WHEN :set_message THEN CAST(:tpl AS jsonb) ELSE template END,
  send_at = CASE WHEN :set_send_at THEN CAST(:s AS timestamptz) ELSE send_at END,
  audience = CASE WHEN :set_audience THEN CAST(:a AS jsonb) ELSE audience END,
  updated_at = now()
WHERE id = :id AND employer_id = :e AND status = 'scheduled'
RETURNING id, message, send_at, status, audience, created_at, dispatched_at, completed_at, cancelled_at, template,
          reminder_of, remind_after_seconds;

-- name: delivery_page
-- An announcement's deliveries, newest first, limit + 1 rows. :needle matches the employee's name; :digits,
-- when the needle looks like a phone number, its digits.
SELECT d.id, d.employee_id, e.name, e.phone, d.status, d.attempts, d.error_code, d.error_title,
       d.skip_reason, d.sent_at, d.delivered_at, d.read_at, d.acknowledged_at, d.language, d.message_status
FROM delivery d JOIN employee e ON e.id = d.employee_id
WHERE d.announcement_id = :a AND d.employer_id = :e AND d.kind = 'announcement'
  AND (CAST(:status AS text) IS NULL OR d.status = :status)
  AND (CAST(:ack AS boolean) IS NULL OR (d.acknowledged_at IS NOT NULL) = :ack)
  AND (:needle = '' OR e.name ILIKE :pattern ESCAPE '\' OR (:digits <> '' AND e.phone LIKE :phone_pattern))
  AND (CAST(:after AS bigint) IS NULL OR d.id < :after)
ORDER BY d.id DESC
LIMIT :limit;

-- name: delivery_export
-- Every delivery of an announcement, oldest first, for the proof-of-notice CSV (bot/announcements/export.py), read
-- through a server-side cursor. Cells come as the CSV's text, formatted here rather than row by row in Python:
-- times in the session's TimeZone (the employer's, set by `export_session`), to the second, with the offset;
-- '' for a null. An erased employee's name and phone never leave the database.
SELECT CAST(d.employee_id AS text) AS employee_id,
       CASE WHEN e.erased_at IS NULL THEN e.name ELSE '' END AS name,
       CASE WHEN e.erased_at IS NULL THEN e.phone END AS phone,
       COALESCE(d.language, '') AS language, d.status, CAST(d.attempts AS text) AS attempts,
       COALESCE(CAST(d.error_code AS text), '') AS error_code, COALESCE(d.error_title, '') AS error_title,
       COALESCE(to_char(d.sent_at, 'YYYY-MM-DD"T"HH24:MI:SSTZH:TZM'), '') AS sent_at,
       COALESCE(to_char(d.delivered_at, 'YYYY-MM-DD"T"HH24:MI:SSTZH:TZM'), '') AS delivered_at,
       COALESCE(to_char(d.read_at, 'YYYY-MM-DD"T"HH24:MI:SSTZH:TZM'), '') AS read_at,
       COALESCE(to_char(d.acknowledged_at, 'YYYY-MM-DD"T"HH24:MI:SSTZH:TZM'), '') AS acknowledged_at
FROM delivery d JOIN employee e ON e.id = d.employee_id
WHERE d.announcement_id = :a AND d.employer_id = :e AND d.kind = 'announcement'
ORDER BY d.id;

-- name: export_session
-- The export's transaction shows times in the employer's timezone (:tz). It waits for its client between
-- fetches: one that stops reading without disconnecting must not hold its snapshot (and vacuum of the ledger)
-- for ever, so PostgreSQL ends the session after :idle.
SELECT set_config('TimeZone', CAST(:tz AS text), true),
       set_config('idle_in_transaction_session_timeout', CAST(:idle AS text), true);

-- name: announcement_timeline
-- How many of an announcement's deliveries were sent, delivered, read and acknowledged in each minute or hour:
-- each delivery's four times, unpivoted, truncated in the employer's timezone (so hours start where the
-- employer's clock says, also in zones with a half-hour offset). Empty buckets are left out.
SELECT date_trunc(CAST(:bucket AS text), t.at, er.timezone) AS at,
       count(*) FILTER (WHERE t.step = 'sent') AS sent,
       count(*) FILTER (WHERE t.step = 'delivered') AS delivered,
       count(*) FILTER (WHERE t.step = 'read') AS read,
       count(*) FILTER (WHERE t.step = 'acknowledged') AS acknowledged
FROM delivery d
JOIN employer er ON er.id = d.employer_id
CROSS JOIN LATERAL (VALUES ('sent', d.sent_at), ('delivered', d.delivered_at), ('read', d.read_at),
                           ('acknowledged', d.acknowledged_at)) AS t(step, at)
WHERE d.announcement_id = :a AND d.employer_id = :e AND d.kind = 'announcement' AND t.at IS NOT NULL
GROUP BY 1
ORDER BY 1;


-- ---------------------------------------------------------------------------------------------------------
-- Reminders (docs/api.md#reminders): an announcement with `reminder_of`, whose audience is the original's
-- employees who were reached (sent, delivered or read) and have acknowledged nothing in the original's chain
-- (the first announcement and every reminder below it, reminders of reminders included), frozen at fan-out.
-- `reminder_fan_out_insert` and `reminder_audience_count` must say the same thing: change them together.

-- name: reminder_fan_out_insert
-- The reminder's audience into the ledger, in the fan-out transaction (the caller holds the reminder's row lock
-- and `employer_lock_share`): an acknowledgement committed before this statement keeps the employee out.
-- Inactive, opted-out and erased employees are left out (nothing to record: they were never in its audience).
-- ON CONFLICT makes a second fan-out a no-op, as for any announcement.
WITH RECURSIVE up(id, reminder_of) AS (
  SELECT id, reminder_of FROM announcement WHERE id = :original
  UNION ALL
  SELECT a.id, a.reminder_of FROM announcement a JOIN up ON a.id = up.reminder_of
), chain(id) AS (
  SELECT id FROM up WHERE reminder_of IS NULL
  UNION ALL
  SELECT a.id FROM announcement a JOIN chain c ON a.reminder_of = c.id
)
INSERT INTO delivery (employer_id, announcement_id, employee_id, kind, status, next_attempt_at, phone_number_id)
SELECT d.employer_id, :aid, d.employee_id, 'announcement', 'pending', now(), r.own
FROM delivery d
JOIN employee e ON e.id = d.employee_id
CROSS JOIN (SELECT delivery_route('announcement', CAST(:eid AS bigint), NULL) AS own) r
WHERE d.announcement_id = :original AND d.employer_id = :eid AND d.kind = 'announcement'
  AND d.status IN ('sent', 'delivered', 'read')
  AND e.active AND e.opted_out_at IS NULL AND e.erased_at IS NULL
  AND NOT EXISTS (
    SELECT 1 FROM delivery k
    WHERE k.employee_id = d.employee_id AND k.kind = 'announcement' AND k.acknowledged_at IS NOT NULL
      AND k.announcement_id IN (SELECT id FROM chain)
  )
ON CONFLICT (announcement_id, employee_id) DO NOTHING;

-- name: reminder_audience_count
-- How many employees a reminder of :original fanned out now would reach (same rule as reminder_fan_out_insert).
WITH RECURSIVE up(id, reminder_of) AS (
  SELECT id, reminder_of FROM announcement WHERE id = :original
  UNION ALL
  SELECT a.id, a.reminder_of FROM announcement a JOIN up ON a.id = up.reminder_of
), chain(id) AS (
  SELECT id FROM up WHERE reminder_of IS NULL
  UNION ALL
  SELECT a.id FROM announcement a JOIN chain c ON a.reminder_of = c.id
)
SELECT count(*)
FROM delivery d
JOIN employee e ON e.id = d.employee_id
WHERE d.announcement_id = :original AND d.employer_id = :eid AND d.kind = 'announcement'
  AND d.status IN ('sent', 'delivered', 'read')
  AND e.active AND e.opted_out_at IS NULL AND e.erased_at IS NULL
  AND NOT EXISTS (
    SELECT 1 FROM delivery k
    WHERE k.employee_id = d.employee_id AND k.kind = 'announcement' AND k.acknowledged_at IS NOT NULL
      AND k.announcement_id IN (SELECT id FROM chain)
  );

-- name: reminder_original
-- The announcement a reminder is asked for, locked against a concurrent cancel while the reminder is created;
-- `reached` says whether anything of it got out (a cancelled one that sent nothing has nobody to remind).
SELECT a.id, a.status, a.message, a.template,
       EXISTS (SELECT 1 FROM delivery d WHERE d.announcement_id = a.id AND d.kind = 'announcement'
                 AND d.status IN ('sent', 'delivered', 'read', 'unknown')) AS reached
FROM announcement a WHERE a.id = :id AND a.employer_id = :e
FOR SHARE;

-- name: reminder_insert
-- A reminder asked for by the operator (POST /announcements/{id}/remind); its audience is decided at fan-out.
INSERT INTO announcement (employer_id, message, send_at, status, audience, created_by_token_id, template, reminder_of)
VALUES (:e, :m, :s, 'scheduled', CAST('{}' AS jsonb), :t, CAST(:tpl AS jsonb), :original)
RETURNING id, send_at;

-- name: auto_reminder_insert
-- `remind_after`: the reminder of each just-completed announcement that asked for one, due its duration after
-- completion, in the completion's transaction. The unique index uq_announcement_auto_reminder makes it once per
-- original, whoever completes it and however often (a resend reopens and completes it again).
INSERT INTO announcement (employer_id, message, send_at, status, audience, created_by_token_id, template,
                          reminder_of, auto_reminder)
SELECT o.employer_id,
       CASE WHEN o.template IS NULL THEN left('Reminder: ' || o.message, 4096) ELSE o.message END,
       o.completed_at + make_interval(secs => o.remind_after_seconds), 'scheduled', CAST('{}' AS jsonb),
       o.created_by_token_id, o.template, o.id, true
FROM announcement o
WHERE o.id = ANY(CAST(:ids AS bigint[])) AND o.status = 'completed' AND o.remind_after_seconds IS NOT NULL
ON CONFLICT (reminder_of) WHERE auto_reminder DO NOTHING
RETURNING id, reminder_of, send_at;

-- name: reminder_summaries
-- The reminders below :id (reminders of reminders too), oldest first. `acknowledged`: of each reminder's
-- recipients, those who acknowledged anything in the chain (by now). `acked_by_then`: of :id's reached
-- employees, those who had acknowledged by the time the next reminder was dispatched (now, for the last one or
-- while the next has not been dispatched); `reached` is the denominator.
WITH RECURSIVE up(id, reminder_of) AS (
  SELECT id, reminder_of FROM announcement WHERE id = :id
  UNION ALL
  SELECT a.id, a.reminder_of FROM announcement a JOIN up ON a.id = up.reminder_of
), chain(id) AS (
  SELECT id FROM up WHERE reminder_of IS NULL
  UNION ALL
  SELECT a.id FROM announcement a JOIN chain c ON a.reminder_of = c.id
), below(id) AS (
  SELECT id FROM announcement WHERE reminder_of = :id
  UNION ALL
  SELECT a.id FROM announcement a JOIN below b ON a.reminder_of = b.id
), acked AS (
  SELECT employee_id, min(acknowledged_at) AS at FROM delivery
  WHERE kind = 'announcement' AND acknowledged_at IS NOT NULL AND announcement_id IN (SELECT id FROM chain)
  GROUP BY employee_id
), reached AS (
  SELECT employee_id FROM delivery
  WHERE announcement_id = :id AND kind = 'announcement' AND status IN ('sent', 'delivered', 'read')
), r AS (
  SELECT a.id, a.status, a.send_at,
         lead(a.id) OVER w AS next_id, lead(a.dispatched_at) OVER w AS next_dispatched_at
  FROM announcement a WHERE a.id IN (SELECT id FROM below) AND a.employer_id = :e
  WINDOW w AS (ORDER BY a.id)
)
SELECT r.id, r.status, r.send_at,
       (SELECT count(*) FROM delivery d WHERE d.announcement_id = r.id AND d.kind = 'announcement') AS recipients,
       (SELECT count(*) FROM delivery d JOIN acked k ON k.employee_id = d.employee_id
        WHERE d.announcement_id = r.id AND d.kind = 'announcement') AS acknowledged,
       (SELECT count(*) FROM reached x JOIN acked k ON k.employee_id = x.employee_id
        WHERE k.at <= COALESCE(r.next_dispatched_at, now())) AS acked_by_then,
       (SELECT count(*) FROM reached) AS reached
FROM r
ORDER BY r.id;


-- ---------------------------------------------------------------------------------------------------------
-- Idempotency-Key of POST /announcements (bot/announcements/idempotency.py explains the protocol).

-- name: idempotency_insert
INSERT INTO idempotency_key (employer_id, key, fingerprint, state, locked_until, expires_at)
VALUES (:employer_id, :key, :fp, 'running', now() + make_interval(secs => :lock), now() + :retain)
ON CONFLICT (employer_id, key) DO NOTHING
RETURNING locked_until;

-- name: idempotency_get
SELECT fingerprint, state, response_status, response_body, locked_until < now() AS stale
FROM idempotency_key WHERE employer_id = :employer_id AND key = :key;

-- name: idempotency_take_over
-- A `running` key whose owner died (its lock expired); only one taker can win.
UPDATE idempotency_key
   SET locked_until = now() + make_interval(secs => :lock), fingerprint = :fp, expires_at = now() + :retain
 WHERE employer_id = :employer_id AND key = :key AND state = 'running' AND locked_until < now()
RETURNING locked_until;

-- name: idempotency_complete
UPDATE idempotency_key
   SET state = 'completed', response_status = :status, response_body = :body, expires_at = now() + :retain
 WHERE employer_id = :employer_id AND key = :key AND state = 'running' AND locked_until = :locked_until;

-- name: idempotency_release
DELETE FROM idempotency_key
WHERE employer_id = :employer_id AND key = :key AND state = 'running' AND locked_until = :locked_until;


-- ---------------------------------------------------------------------------------------------------------
-- Employees' messages (the webhook) and the inbox.

-- name: inbound_people
-- Every employee a message's sender is (by number, and by a current business-scoped user id), with what routing
-- needs: their employer's name and own number (NULL: the employer uses the shared one), and when we last
-- messaged them. Most recently messaged first.
SELECT emp.id, emp.employer_id, emp.active, er.name AS employer_name, s.phone_number_id AS own_number
FROM employee emp
JOIN employer er ON er.id = emp.employer_id
LEFT JOIN sender s ON s.employer_id = emp.employer_id
LEFT JOIN LATERAL (SELECT max(created_at) AS last FROM delivery x WHERE x.employee_id = emp.id) l ON true
WHERE emp.id IN (SELECT id FROM employee WHERE phone = CAST(:phone AS text)
                 UNION
                 SELECT employee_id FROM employee_user_id WHERE user_id = CAST(:uid AS text) AND superseded_at IS NULL)
ORDER BY l.last DESC NULLS LAST, emp.id DESC;

-- name: inbound_quoted
-- The announcement a message answers: the one whose wamid is its `context.id`, else the one its quick-reply
-- payload names (`ack:<id>`), which only counts when that delivery went to this very person (:who).
SELECT x.id, x.announcement_id, x.employer_id, x.employee_id FROM delivery x
WHERE x.kind = 'announcement'
  AND (x.wamid = CAST(:ctx AS text) OR (x.id = CAST(:ack AS bigint) AND x.employee_id = ANY(CAST(:who AS bigint[]))))
ORDER BY x.wamid = CAST(:ctx AS text) DESC NULLS LAST
LIMIT 1;

-- name: inbound_insert
-- The message, stored once by its wamid, filed with the employer and employee routing chose (NULL: nobody's,
-- or `held` until the sender says which employer it is for).
INSERT INTO inbound_message (wamid, employer_id, employee_id, from_phone, from_user_id, phone_number_id, held, type,
                             text, context_wamid, announcement_id, delivery_id, payload)
VALUES (:wamid, :employer_id, :employee_id, :phone, :uid, :pnid, :held, :type, :text, :ctx, :announcement_id,
        :delivery_id, CAST(:p AS jsonb))
ON CONFLICT (wamid) DO NOTHING
RETURNING id;

-- name: employer_choice_current
-- Which employer this person said their messages on this number are for, while that choice lasts.
SELECT employer_id FROM employer_choice
WHERE phone_number_id = :pnid AND expires_at > now()
  AND (phone = CAST(:phone AS text) OR user_id = CAST(:uid AS text))
ORDER BY chosen_at DESC
LIMIT 1;

-- name: employer_choice_insert
INSERT INTO employer_choice (phone, user_id, phone_number_id, employer_id, expires_at)
VALUES (:phone, :uid, :pnid, :e, now() + make_interval(secs => :ttl));

-- name: inbound_held_before
-- Is an earlier message from this person on this number still waiting for their choice? Then they were asked.
SELECT EXISTS (
  SELECT 1 FROM inbound_message
  WHERE held AND wamid <> :wamid AND COALESCE(phone_number_id, '') = :pnid
    AND (from_phone = CAST(:phone AS text) OR from_user_id = CAST(:uid AS text)));

-- name: inbound_file_held
-- The person chose: their held messages on this number go to that employer's inbox.
UPDATE inbound_message SET employer_id = :e, employee_id = :employee_id, held = false
WHERE held AND COALESCE(phone_number_id, '') = :pnid
  AND (from_phone = CAST(:phone AS text) OR from_user_id = CAST(:uid AS text));

-- name: employee_opt_out
-- STOP: these employees (the sender, at every employer the number written to serves) opt out.
UPDATE employee SET opted_out_at = now(), updated_at = now()
WHERE opted_out_at IS NULL AND id = ANY(CAST(:ids AS bigint[]));

-- name: employee_opt_in
UPDATE employee SET opted_out_at = NULL, updated_at = now()
WHERE opted_out_at IS NOT NULL AND id = ANY(CAST(:ids AS bigint[]));

-- name: user_id_from_message
-- A message naming both the sender's number and their business-scoped user id proves the user id is theirs.
INSERT INTO employee_user_id (employee_id, phone_number_id, user_id, learned_from)
SELECT id, COALESCE(CAST(:pnid AS text), ''), :uid, 'message' FROM employee WHERE phone = :phone
ON CONFLICT (employee_id, phone_number_id, user_id) DO NOTHING;

-- name: employees_of_sender
-- Every employee a message's sender is: by number, and by a current business-scoped user id.
SELECT id FROM employee WHERE phone = CAST(:phone AS text)
UNION
SELECT employee_id FROM employee_user_id WHERE user_id = CAST(:uid AS text) AND superseded_at IS NULL
ORDER BY 1;

-- name: user_id_replace
-- Meta announced a new business-scoped user id for these employees (a changed number or user id): the current
-- ones are kept as history, the new one is current. ON CONFLICT: it was known before, and is current again.
WITH old AS (
  UPDATE employee_user_id SET superseded_at = now()
  WHERE employee_id = ANY(CAST(:ids AS bigint[])) AND superseded_at IS NULL AND user_id <> :uid
  RETURNING id
)
INSERT INTO employee_user_id (employee_id, phone_number_id, user_id, parent_user_id, learned_from)
SELECT i, COALESCE(CAST(:pnid AS text), ''), :uid, :parent, 'system' FROM unnest(CAST(:ids AS bigint[])) AS i
ON CONFLICT (employee_id, phone_number_id, user_id) DO UPDATE SET superseded_at = NULL
RETURNING employee_id;

-- name: employee_change_phone
-- Meta announced the person's new number. An employer where another employee already has it keeps the old one
-- (the operator sorts that out); the opt-out, tags and history stay with the employee.
UPDATE employee e SET phone = :new, updated_at = now()
WHERE e.id = ANY(CAST(:ids AS bigint[])) AND e.phone <> :new
  AND NOT EXISTS (SELECT 1 FROM employee o WHERE o.employer_id = e.employer_id AND o.phone = :new)
RETURNING e.id, e.employer_id;

-- name: identity_change_record
INSERT INTO identity_change (employee_id, kind, old_value, new_value, wamid)
SELECT i, :kind, :old, :new, :wamid FROM unnest(CAST(:ids AS bigint[])) AS i;

-- name: inbox_page
-- The employer's inbox, newest first (`ix_inbound_message_employer_id_id`). :acks false leaves out the messages
-- that acknowledged an announcement (a tap, a reply quoting it): the webhook files those with the delivery they
-- acknowledged (`delivery_id`). `answered`: an operator reply to the employee (a reply keyed `op:…`) was queued
-- after the message came, found through `ix_delivery_operator_reply` without reading their other deliveries.
SELECT m.id, m.employee_id, e.name AS employee_name, m.type, m.text, m.announcement_id, m.received_at,
       EXISTS (SELECT 1 FROM delivery r
               WHERE r.employee_id = m.employee_id AND r.reply_key LIKE 'op:%' AND r.created_at > m.received_at)
         AS answered
FROM inbound_message m LEFT JOIN employee e ON e.id = m.employee_id
WHERE m.employer_id = :employer_id AND (CAST(:after AS bigint) IS NULL OR m.id < :after)
  AND (CAST(:acks AS boolean) OR m.delivery_id IS NULL)
ORDER BY m.id DESC
LIMIT :n;

-- name: inbox_page_of_employee
-- `inbox_page` for one employee (`?employee_id=`): their messages by `ix_inbound_message_employee_id_id`, not a
-- walk through the whole inbox. Another employer's employee has no messages here.
SELECT m.id, m.employee_id, e.name AS employee_name, m.type, m.text, m.announcement_id, m.received_at,
       EXISTS (SELECT 1 FROM delivery r
               WHERE r.employee_id = m.employee_id AND r.reply_key LIKE 'op:%' AND r.created_at > m.received_at)
         AS answered
FROM inbound_message m LEFT JOIN employee e ON e.id = m.employee_id
WHERE m.employee_id = :employee_id AND m.employer_id = :employer_id
  AND (CAST(:after AS bigint) IS NULL OR m.id < :after)
  AND (CAST(:acks AS boolean) OR m.delivery_id IS NULL)
ORDER BY m.id DESC
LIMIT :n;


-- ---------------------------------------------------------------------------------------------------------
-- Conversations (bot/conversations/): one employee's messages and ours, and operator replies. An operator reply
-- is queued with `queue_reply` like the bot's own replies, keyed `op:<employee id>:<uuid>`.

-- name: conversation_employee
-- The employee (nothing: not this employer's), and their last message: it opened WhatsApp's 24-hour window, and
-- a reply goes back the way it came: from the number they wrote to while that is the employer's own (else the
-- shared one, NULL, as `delivery_route()` routes every reply), to their user id when they wrote without their
-- number.
SELECT e.id, e.erased_at, m.received_at AS last_wrote,
       delivery_route('reply', e.employer_id, m.phone_number_id) AS route,
       CASE WHEN m.from_phone IS NULL THEN m.from_user_id END AS recipient_user_id
FROM employee e
LEFT JOIN LATERAL (
  SELECT x.received_at, x.phone_number_id, x.from_phone, x.from_user_id FROM inbound_message x
  WHERE x.employee_id = e.id AND x.employer_id = e.employer_id
  ORDER BY x.id DESC
  LIMIT 1
) m ON true
WHERE e.id = :id AND e.employer_id = :e;

-- name: conversation_page
-- One employee's conversation, newest first, before the cursor (:at, :rank, :before): their messages (rank 0) and
-- our deliveries to them (rank 1: announcements with their text or template preview, bot and operator replies).
-- Ordered by when each entered the conversation (received; queued), which never changes, so pages neither overlap
-- nor skip while a delivery is being sent. Each side is cut to :n before the two are merged.
SELECT c.direction, c.id, c.sort_at, c.rank, c.kind, c.type, c.text, c.announcement_id, c.status, c.at
FROM (
  (SELECT 'in' AS direction, m.id, m.received_at AS sort_at, 0 AS rank, 'message' AS kind, m.type, m.text,
          m.announcement_id, CAST(NULL AS text) AS status, m.received_at AS at
   FROM inbound_message m
   WHERE m.employee_id = :id AND m.employer_id = :e
     AND (CAST(:at AS timestamptz) IS NULL
          OR (m.received_at, 0, m.id) < (CAST(:at AS timestamptz), CAST(:rank AS integer), CAST(:before AS bigint)))
   ORDER BY m.received_at DESC, m.id DESC
   LIMIT :n)
  UNION ALL
  (SELECT 'out', d.id, d.created_at, 1, d.kind, CAST(NULL AS text), COALESCE(a.message, d.body), d.announcement_id,
          d.status, COALESCE(d.sent_at, d.created_at)
   FROM delivery d LEFT JOIN announcement a ON a.id = d.announcement_id
   WHERE d.employee_id = :id AND d.employer_id = :e
     AND (CAST(:at AS timestamptz) IS NULL
          OR (d.created_at, 1, d.id) < (CAST(:at AS timestamptz), CAST(:rank AS integer), CAST(:before AS bigint)))
   ORDER BY d.created_at DESC, d.id DESC
   LIMIT :n)
) c
ORDER BY c.sort_at DESC, c.rank DESC, c.id DESC
LIMIT :n;

-- name: operator_reply_get
-- An operator reply as just queued (the answer to POST /employees/{id}/messages).
SELECT id, kind, body AS text, status, created_at AS at FROM delivery WHERE reply_key = :reply_key;


-- ---------------------------------------------------------------------------------------------------------
-- Housekeeping (bot/maintenance.py).

-- name: purge_idempotency_keys
DELETE FROM idempotency_key WHERE expires_at < now();

-- name: purge_webhook_events
DELETE FROM webhook_event WHERE received_at < now() - make_interval(days => :days);

-- name: purge_inbound_messages
DELETE FROM inbound_message WHERE received_at < now() - make_interval(days => :days);



-- ---------------------------------------------------------------------------------------------------------
-- Waking the dispatchers.

-- name: wake_dispatchers
-- Work is due now (an announcement to send at once, a reply, a resend): every listening dispatcher looks at
-- the ledger at once instead of at its next poll. Sent when the caller's transaction commits, so a dispatcher
-- never wakes before the work is visible; several in one transaction are delivered once.
SELECT pg_notify('jem_dispatch', '');


-- ---------------------------------------------------------------------------------------------------------
-- The command line (bot/commands/): employers and tokens, and the demo's employees.

-- name: employer_find
SELECT id FROM employer WHERE slug = :s;

-- name: employer_create
-- None when the slug is taken; then nothing changes.
INSERT INTO employer (slug, name, timezone, language) VALUES (:s, :n, :t, :lang)
ON CONFLICT (slug) DO NOTHING RETURNING id;

-- name: token_create
-- Only the token's hash is stored.
INSERT INTO api_token (employer_id, token_hash, label) VALUES (:e, :h, :l);

-- name: token_exists
SELECT 1 FROM api_token WHERE employer_id = :e AND token_hash = :h AND revoked_at IS NULL;

-- name: token_list
-- What `jem-bot token list` shows: never the hash.
SELECT id, label, created_at, last_used_at, revoked_at FROM api_token WHERE employer_id = :e ORDER BY id;

-- name: token_revoke
-- The lookup (`token_lookup`) skips a revoked token from the commit on. No row: unknown, or already revoked.
UPDATE api_token SET revoked_at = now() WHERE id = :id AND revoked_at IS NULL RETURNING id, label, revoked_at;

-- name: token_revoked_at
SELECT revoked_at FROM api_token WHERE id = :id;

-- name: demo_employee
-- The demo's people are added once; a re-run changes nothing an operator edited.
INSERT INTO employee (employer_id, phone, name, tags, language) VALUES (:e, :p, :n, :t, :lang)
ON CONFLICT (employer_id, phone) DO NOTHING;

-- name: dispatchers_alive
-- Dispatchers (inside `serve` or `jem-bot worker`, on any machine) whose heartbeat has not expired.
SELECT count(*) FROM worker WHERE stopped_at IS NULL AND expires_at > now();


-- ---------------------------------------------------------------------------------------------------------
-- Senders: an employer's own WhatsApp number (docs/architecture.md#several-numbers).

-- name: sender_get
SELECT phone_number_id, waba_id, access_token_hint, rate FROM sender WHERE employer_id = :e;

-- name: sender_put
-- One employer per number: another employer's number is a unique violation (409).
INSERT INTO sender (employer_id, phone_number_id, waba_id, access_token, access_token_hint, rate)
VALUES (:e, :p, :w, :token, :hint, :rate)
ON CONFLICT (employer_id) DO UPDATE SET
  phone_number_id = EXCLUDED.phone_number_id, waba_id = EXCLUDED.waba_id, access_token = EXCLUDED.access_token,
  access_token_hint = EXCLUDED.access_token_hint, rate = EXCLUDED.rate, updated_at = now()
RETURNING phone_number_id, waba_id, access_token_hint, rate;

-- name: sender_unpause
-- A new token for the number: a pause its old token caused (190, expired or revoked) is over.
UPDATE send_budget SET paused_until = NULL, pause_reason = NULL WHERE phone_number_id = :p AND paused_until IS NOT NULL;

-- name: sender_delete
DELETE FROM sender WHERE employer_id = :e;

-- name: sender_reroute
-- The employer's sender changed: what waits goes out from its number now (the caller holds `employer_lock`).
UPDATE delivery SET phone_number_id = delivery_route(kind, employer_id, phone_number_id)
WHERE employer_id = :e AND status = 'pending'
  AND phone_number_id IS DISTINCT FROM delivery_route(kind, employer_id, phone_number_id);

-- name: reroute_stranded
-- Rows waiting for a number that is no longer an own number of their employer (a sender change that raced a
-- retry): no dispatcher claims for it, so they are moved to the number they go out from now.
UPDATE delivery d SET phone_number_id = delivery_route(d.kind, d.employer_id, d.phone_number_id)
WHERE d.status = 'pending' AND COALESCE(d.phone_number_id, '') <> ''
  AND NOT EXISTS (SELECT 1 FROM sender s WHERE s.phone_number_id = d.phone_number_id AND s.employer_id = d.employer_id);

-- name: senders_all
-- Every own number, with what a dispatcher needs to send from it.
SELECT employer_id, phone_number_id, waba_id, access_token, rate FROM sender ORDER BY phone_number_id;

-- name: sender_any_token
-- One sealed token, to check at start-up that JEM_SECRET_KEY opens it.
SELECT access_token FROM sender LIMIT 1;

-- name: sender_of_number
-- The employer whose own number this is, if any: a message to it belongs to that employer alone.
SELECT employer_id FROM sender WHERE phone_number_id = :p;


-- ---------------------------------------------------------------------------------------------------------
-- Templates: each business account's catalogue as Graph listed it (docs/architecture.md#templates).

-- name: template_upsert
INSERT INTO template (waba_id, name, language, status, category, header_format, header_text, body_text,
                      body_parameters, buttons, components, synced_at)
VALUES (:w, :name, :language, :status, :category, :header_format, :header_text, :body_text, :body_parameters,
        CAST(:buttons AS jsonb), CAST(:components AS jsonb), now())
ON CONFLICT (waba_id, name, language) DO UPDATE SET
  status = EXCLUDED.status, category = EXCLUDED.category, header_format = EXCLUDED.header_format,
  header_text = EXCLUDED.header_text, body_text = EXCLUDED.body_text, body_parameters = EXCLUDED.body_parameters,
  buttons = EXCLUDED.buttons, components = EXCLUDED.components, synced_at = now();

-- name: templates_forget
-- Translations Graph no longer lists (deleted in WhatsApp Manager) are forgotten.
DELETE FROM template t
WHERE t.waba_id = :w
  AND NOT EXISTS (SELECT 1 FROM unnest(CAST(:names AS text[]), CAST(:languages AS text[])) AS k(name, language)
                  WHERE k.name = t.name AND k.language = t.language);

-- name: template_sync_done
INSERT INTO template_sync (waba_id, synced_at, attempted_at, error, templates) VALUES (:w, now(), now(), NULL, :n)
ON CONFLICT (waba_id) DO UPDATE SET synced_at = now(), attempted_at = now(), error = NULL, templates = :n;

-- name: template_sync_failed
INSERT INTO template_sync (waba_id, attempted_at, error) VALUES (:w, now(), :error)
ON CONFLICT (waba_id) DO UPDATE SET attempted_at = now(), error = :error;

-- name: template_sync_known
SELECT EXISTS (SELECT 1 FROM template_sync WHERE waba_id = :w AND synced_at IS NOT NULL);

-- name: template_sync_due
-- Accounts whose catalogue was last read (or tried) more than :secs seconds ago, among :wabas.
SELECT w.waba_id FROM unnest(CAST(:wabas AS text[])) AS w(waba_id)
LEFT JOIN template_sync s ON s.waba_id = w.waba_id
WHERE s.waba_id IS NULL OR s.attempted_at < now() - make_interval(secs => :secs);

-- name: template_translations
SELECT name, language, status, category, header_format, header_text, body_text, body_parameters, buttons,
       components
FROM template WHERE waba_id = :w AND name = :name ORDER BY language;

-- name: templates_list
SELECT name, language, status, category, header_format, header_text, body_text, body_parameters, buttons,
       components
FROM template WHERE waba_id = :w AND (NOT CAST(:approved AS boolean) OR status = 'APPROVED')
ORDER BY name, language;

-- name: sender_wabas
-- Every business account an own number belongs to, with one of its tokens (the shared number's is a setting).
SELECT DISTINCT ON (waba_id) waba_id, access_token FROM sender ORDER BY waba_id, updated_at DESC;

-- name: sender_account
-- An employer's own number with what talking to Graph for it needs (the token is sealed).
SELECT phone_number_id, waba_id, access_token FROM sender WHERE employer_id = :e;

-- name: announcement_languages
-- Deliveries sent (Meta accepted them), by the template translation they went out in.
SELECT language, count(*) AS n FROM delivery
WHERE announcement_id = :id AND kind = 'announcement' AND language IS NOT NULL AND wamid IS NOT NULL
GROUP BY language ORDER BY language;

-- name: announcement_failures
-- Failed deliveries by Meta's code (e.g. 131047: text outside the 24-hour window), most frequent first.
SELECT error_code, min(error_title) AS error_title, count(*) AS n FROM delivery
WHERE announcement_id = :id AND kind = 'announcement' AND status = 'failed'
GROUP BY error_code ORDER BY n DESC, error_code;

-- name: employer_language
SELECT language FROM employer WHERE id = :e;


-- ---------------------------------------------------------------------------------------------------------
-- Erasure (bot/employees/erasure.py, docs/architecture.md#erasure) and opt-outs kept by a keyed hash
-- (bot/optouts.py).

-- name: erase_lock
-- The employee, locked: a PATCH, an upsert or a webhook's opt-out of this row waits for the erasure, or the
-- erasure for it. An erased employee is not found (erasing twice is a 404).
SELECT id, phone, opted_out_at FROM employee
WHERE id = :id AND employer_id = :e AND erased_at IS NULL
FOR UPDATE;

-- name: erase_user_ids
-- The business-scoped user ids ever learned for the employee (their raw webhook events are scrubbed by them).
SELECT DISTINCT user_id FROM employee_user_id WHERE employee_id = :id
UNION
SELECT DISTINCT recipient_user_id FROM delivery WHERE employee_id = :id AND recipient_user_id IS NOT NULL;

-- name: erase_cancel_pending
-- What waits for the employee (announcements and replies alike) is cancelled; locked in id order as every
-- ledger statement does. A claim that already took a row holds its lock: this waits, then finds it `sending`
-- (in flight: it finishes) and leaves it. The claim looks at the employee again, so a row fanned out from a
-- snapshot taken before the erasure committed is skipped (`erased`), never sent.
WITH waiting AS (
  SELECT id FROM delivery WHERE employee_id = :id AND status = 'pending' ORDER BY id FOR UPDATE
)
UPDATE delivery d SET status = 'cancelled', cancelled_at = now(), updated_at = now()
FROM waiting w
WHERE d.id = w.id AND d.status = 'pending';

-- name: erase_deliveries
-- The ledger rows stay (every count is unchanged) without what they said to, or knew about, the person: the
-- text and interactive body of replies addressed to them, their user id, and Meta's message ids (a wamid
-- encodes the recipient's number). Returns the wamids, so their webhook events can be scrubbed too.
WITH hit AS (
  SELECT id, wamid FROM delivery WHERE employee_id = :id ORDER BY id FOR UPDATE
),
scrubbed AS (
  UPDATE delivery d SET
    body = CASE WHEN d.kind = 'announcement' THEN d.body END,
    payload = CASE WHEN d.kind = 'announcement' THEN d.payload END,
    recipient_user_id = NULL, wamid = NULL, updated_at = now()
  FROM hit h
  WHERE d.id = h.id
)
SELECT wamid FROM hit WHERE wamid IS NOT NULL;

-- name: erase_inbound
-- Their messages keep their place (type, time, the announcement they answered) without their content: the
-- messages filed as theirs, those to this employer from their number or user ids, and those filed with nobody
-- from their number when no other employer's employee has it (someone else's, otherwise). The wamid gives
-- way to a placeholder (a wamid encodes the sender's number). Returns the old wamids.
WITH hit AS (
  SELECT m.id, m.wamid FROM inbound_message m
  WHERE m.employee_id = :id
     OR (m.employer_id = :e AND (m.from_phone = :phone OR m.from_user_id = ANY(CAST(:uids AS text[]))))
     OR (m.employer_id IS NULL AND (m.from_phone = :phone OR m.from_user_id = ANY(CAST(:uids AS text[])))
         AND NOT EXISTS (SELECT 1 FROM employee o WHERE o.phone = :phone AND o.id <> :id))
  ORDER BY m.id
  FOR UPDATE
),
scrubbed AS (
  UPDATE inbound_message m SET
    text = NULL, payload = NULL, from_phone = NULL, from_user_id = NULL, context_wamid = NULL,
    wamid = 'erased:' || m.id
  FROM hit h
  WHERE m.id = h.id
)
SELECT wamid FROM hit WHERE wamid NOT LIKE 'erased:%';

-- name: erase_webhook_events
-- Meta's raw events (kept 8 days for dedup) lose their payload when they are about the person: those keyed by
-- the wamids of their messages and our sends to them, and any whose payload carries their number (as Meta
-- writes it: digits, no +) or one of their user ids. The keys stay, so a redelivery is still recognised.
UPDATE webhook_event w SET payload = NULL
WHERE w.payload IS NOT NULL AND (
  EXISTS (SELECT 1 FROM unnest(CAST(:wamids AS text[])) AS x(wamid)
          WHERE w.key = 'msg:' || x.wamid OR left(w.key, length(x.wamid) + 4) = 'st:' || x.wamid || ':')
  OR strpos(CAST(w.payload AS text), :digits) > 0
  OR EXISTS (SELECT 1 FROM unnest(CAST(:uids AS text[])) AS u(uid) WHERE strpos(CAST(w.payload AS text), u.uid) > 0)
);

-- name: erase_identity
-- The user ids learned for them, Meta's announcements of their changed number or user id, and their answers to
-- "which employer is your message for?" given to this employer.
WITH ids AS (DELETE FROM employee_user_id WHERE employee_id = :id),
changes AS (DELETE FROM identity_change WHERE employee_id = :id)
DELETE FROM employer_choice
WHERE employer_id = :e AND (phone = :phone OR user_id = ANY(CAST(:uids AS text[])));

-- name: erase_employee
-- The tombstone the ledger keeps pointing at: no name, no number (a placeholder no real number can equal,
-- which keeps the employer's numbers unique and NOT NULL), no tags or language, inactive. `opted_out_at`
-- stays: a timestamp that says nothing about who, and why their old rows were skipped.
UPDATE employee SET
  name = '', phone = 'erased:' || id, tags = '{}', language = NULL, active = false,
  deactivated_at = COALESCE(deactivated_at, now()), erased_at = now(), updated_at = now()
WHERE id = :id
RETURNING erased_at;

-- name: opt_out_hash_remember
-- Their opt-out, kept as the keyed hash of the number (the first one stays: it says since when).
INSERT INTO opt_out_hash (employer_id, phone_hash) VALUES (:e, :h)
ON CONFLICT (employer_id, phone_hash) DO NOTHING;

-- name: opt_out_hash_restore
-- Employees of the employer who have one of these numbers (:hashes their keyed hashes) and whose number an erased
-- employee had opted out of: opted out again, since then. The hash goes: the opt-out lives on the employee again.
WITH v AS (
  SELECT * FROM unnest(CAST(:phones AS text[]), CAST(:hashes AS bytea[])) AS v(phone, h)
),
kept AS (
  DELETE FROM opt_out_hash o USING v
  WHERE o.employer_id = :e AND o.phone_hash = v.h
    AND EXISTS (SELECT 1 FROM employee e WHERE e.employer_id = :e AND e.phone = v.phone AND e.erased_at IS NULL)
  RETURNING v.phone, o.opted_out_at
)
UPDATE employee e SET opted_out_at = COALESCE(e.opted_out_at, k.opted_out_at), updated_at = now()
FROM kept k
WHERE e.employer_id = :e AND e.phone = k.phone;

-- name: opt_out_hash_forget
-- START from the number: the opt-outs kept by its hash at the employers the number written to serves (:own, an
-- employer's own number; NULL, the shared one: every employer without an own number) end.
DELETE FROM opt_out_hash o
WHERE o.phone_hash = :h
  AND (o.employer_id = CAST(:own AS bigint)
       OR (CAST(:own AS bigint) IS NULL AND NOT EXISTS (SELECT 1 FROM sender s WHERE s.employer_id = o.employer_id)));

-- name: opt_out_hash_any
-- Does any kept opt-out exist? Then JEM_SECRET_KEY is needed to match it (bot/runtime.py refuses to start).
SELECT EXISTS (SELECT 1 FROM opt_out_hash);
