-- PHR-07's image burst budget shared by every server instance on this database (PHR_API.md PHR-07).
--
-- With several instances behind a balancer, a budget kept in each process grants a client N times the
-- budget. Here each client (certificate fingerprint + facility) has one row holding its grants still in the
-- window; phr_image_burst_take decides one request in one statement: it locks the client's row, drops the
-- grants that left the window, and either records the new grant (returns 0) or returns the milliseconds
-- until enough bytes leave for it to fit. The row lock serialises decisions for one client across
-- instances, and each statement inside the function sees every decision committed before it, so the window
-- is exact: no interval of window_ms ever holds more than the budget. Grants within merge_ms of an entry's
-- first grant are merged into it and counted from the latest of them (stricter by at most merge_ms; it bounds
-- a row to about window_ms / merge_ms entries), exactly as the in-process limiter does. Times are epoch
-- milliseconds from the deciding instance's clock.

CREATE TABLE phr_image_burst (
    client_key  VARCHAR(256) PRIMARY KEY,
    -- Per entry, oldest first: the earliest merged grant, the latest (the entry leaves window_ms after it),
    -- and the bytes.
    first_ms    BIGINT[] NOT NULL DEFAULT '{}',
    at_ms       BIGINT[] NOT NULL DEFAULT '{}',
    bytes       BIGINT[] NOT NULL DEFAULT '{}',
    -- The latest grant; a row whose latest grant left the window holds nothing and may be deleted.
    touched_ms  BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX phr_image_burst_touched_idx ON phr_image_burst (touched_ms);

CREATE FUNCTION phr_image_burst_take(
    p_client TEXT, p_bytes BIGINT, p_now BIGINT, p_budget BIGINT, p_window BIGINT, p_merge BIGINT
) RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    r          phr_image_burst%ROWTYPE;
    keep_first BIGINT[] := '{}';
    keep_at    BIGINT[] := '{}';
    keep_bytes BIGINT[] := '{}';
    total      BIGINT := 0;
    freed      BIGINT := 0;
    n          INT;
BEGIN
    IF p_bytes > p_budget THEN
        RETURN p_window;
    END IF;
    -- Forget a few idle clients on the way (never waiting for a row another decision holds).
    DELETE FROM phr_image_burst WHERE client_key IN (
        SELECT client_key FROM phr_image_burst
        WHERE touched_ms <= p_now - p_window AND client_key <> p_client
        LIMIT 16 FOR UPDATE SKIP LOCKED);
    -- Creates or locks the client's row and reads its newest version, in one statement (a row deleted by
    -- another instance's sweep in between is simply created again).
    INSERT INTO phr_image_burst (client_key) VALUES (p_client)
    ON CONFLICT (client_key) DO UPDATE SET client_key = EXCLUDED.client_key
    RETURNING * INTO r;
    FOR i IN 1 .. coalesce(cardinality(r.at_ms), 0) LOOP
        IF p_now - r.at_ms[i] < p_window THEN
            keep_first := keep_first || r.first_ms[i];
            keep_at := keep_at || r.at_ms[i];
            keep_bytes := keep_bytes || r.bytes[i];
            total := total + r.bytes[i];
        END IF;
    END LOOP;
    n := cardinality(keep_at);
    IF total + p_bytes <= p_budget THEN
        IF p_bytes > 0 THEN
            IF n > 0 AND p_now >= keep_at[n] AND p_now - keep_first[n] < p_merge THEN
                keep_at[n] := p_now;
                keep_bytes[n] := keep_bytes[n] + p_bytes;
            ELSE
                keep_first := keep_first || p_now;
                keep_at := keep_at || p_now;
                keep_bytes := keep_bytes || p_bytes;
            END IF;
        END IF;
        UPDATE phr_image_burst
        SET first_ms = keep_first, at_ms = keep_at, bytes = keep_bytes,
            touched_ms = greatest(touched_ms, CASE WHEN p_bytes > 0 THEN p_now ELSE 0 END)
        WHERE client_key = p_client;
        RETURN 0;
    END IF;
    UPDATE phr_image_burst SET first_ms = keep_first, at_ms = keep_at, bytes = keep_bytes
    WHERE client_key = p_client;
    -- Oldest first, until enough bytes would have left for this request to fit.
    FOR i IN 1 .. n LOOP
        freed := freed + keep_bytes[i];
        IF freed >= total + p_bytes - p_budget THEN
            RETURN greatest(keep_at[i] + p_window - p_now, 1);
        END IF;
    END LOOP;
    RETURN p_window;
END
$$;
