-- Clinical data behind PHR-01..05, 08..11 and the image table PHR-07 reads.
--
-- Every table is keyed by facility first: every query filters by the caller's facility, so facility
-- isolation is part of every index. Children reference their parents by natural keys
-- (facility_id, catch_id[, bundle_seq]) rather than surrogate ids, so `seed` can write them in multi-row
-- batches without reading ids back. Clinical dates are TEXT: `yyyy-MM-dd` or `yyyy-MM-ddTHH:mm:ss`, which sort
-- chronologically as text on both backends.

CREATE TABLE patient (
    facility_id  VARCHAR(64) NOT NULL REFERENCES facility (facility_id),
    patient_id   VARCHAR(64) NOT NULL,
    name         TEXT NOT NULL,
    sex          VARCHAR(16),
    birthday     VARCHAR(10),
    zip_code     VARCHAR(16),
    address      TEXT,
    telephone    VARCHAR(32),
    PRIMARY KEY (facility_id, patient_id)
);

CREATE TABLE phr_key (
    id           BIGSERIAL PRIMARY KEY,
    facility_id  VARCHAR(64) NOT NULL,
    patient_id   VARCHAR(64) NOT NULL,
    access_key   VARCHAR(128) NOT NULL UNIQUE,
    secret_key   VARCHAR(128) NOT NULL,
    registered   TEXT NOT NULL,
    UNIQUE (facility_id, patient_id),
    FOREIGN KEY (facility_id, patient_id) REFERENCES patient (facility_id, patient_id)
);

CREATE TABLE allergy (
    id               BIGSERIAL PRIMARY KEY,
    facility_id      VARCHAR(64) NOT NULL,
    patient_id       VARCHAR(64) NOT NULL,
    factor           TEXT NOT NULL,
    severity         VARCHAR(32),
    identified_date  VARCHAR(10),
    memo             TEXT,
    FOREIGN KEY (facility_id, patient_id) REFERENCES patient (facility_id, patient_id)
);
CREATE INDEX allergy_patient_idx ON allergy (facility_id, patient_id, id);

CREATE TABLE disease (
    id              BIGSERIAL PRIMARY KEY,
    facility_id     VARCHAR(64) NOT NULL,
    patient_id      VARCHAR(64) NOT NULL,
    diagnosis       TEXT NOT NULL,
    diagnosis_code  VARCHAR(32),
    started         VARCHAR(10) NOT NULL,
    ended           VARCHAR(10),
    -- 'active' or 'inactive'; PHR-05 lists the active ones.
    status          VARCHAR(16) NOT NULL CHECK (status IN ('active', 'inactive')),
    FOREIGN KEY (facility_id, patient_id) REFERENCES patient (facility_id, patient_id)
);
CREATE INDEX disease_patient_idx ON disease (facility_id, patient_id, status, started DESC, id DESC);

CREATE TABLE document (
    id               BIGSERIAL PRIMARY KEY,
    facility_id      VARCHAR(64) NOT NULL,
    patient_id       VARCHAR(64) NOT NULL,
    catch_id         VARCHAR(64) NOT NULL CHECK (catch_id <> ''),
    started          VARCHAR(19) NOT NULL,
    confirmed        VARCHAR(19),
    status           VARCHAR(16),
    physician_id     VARCHAR(64),
    physician_name   TEXT,
    department       VARCHAR(32),
    department_desc  TEXT,
    license          VARCHAR(32),
    rp_request       BIGINT,
    rp_reply         TEXT,
    rp_reply_to      TEXT,
    UNIQUE (facility_id, catch_id),
    FOREIGN KEY (facility_id, patient_id) REFERENCES patient (facility_id, patient_id)
);
CREATE INDEX document_patient_idx ON document (facility_id, patient_id, started DESC, id DESC);

CREATE TABLE bundle (
    facility_id        VARCHAR(64) NOT NULL,
    catch_id           VARCHAR(64) NOT NULL,
    -- Position of the bundle inside its document.
    bundle_seq         INTEGER NOT NULL,
    bundle_id          VARCHAR(64) NOT NULL,
    -- medOrder, injectionOrder, testOrder, treatmentOrder, ...
    ent                VARCHAR(32) NOT NULL,
    role               VARCHAR(32),
    number             VARCHAR(32),
    cls_name           TEXT,
    cls_code           VARCHAR(32),
    cls_code_system    VARCHAR(64),
    admin              TEXT,
    admin_code         VARCHAR(32),
    admin_code_system  VARCHAR(64),
    admin_memo         TEXT,
    bundle_number      VARCHAR(32),
    memo               TEXT,
    insurance          TEXT,
    order_name         TEXT,
    PRIMARY KEY (facility_id, catch_id, bundle_seq),
    FOREIGN KEY (facility_id, catch_id) REFERENCES document (facility_id, catch_id)
);

CREATE TABLE claim_item (
    facility_id         VARCHAR(64) NOT NULL,
    catch_id            VARCHAR(64) NOT NULL,
    bundle_seq          INTEGER NOT NULL,
    -- Position of the item inside its bundle.
    item_seq            INTEGER NOT NULL,
    name                TEXT NOT NULL,
    code                VARCHAR(32),
    code_system         VARCHAR(64),
    cls_code            VARCHAR(32),
    cls_code_system     VARCHAR(64),
    quantity            VARCHAR(32),
    unit                VARCHAR(32),
    number_code         VARCHAR(32),
    number_code_system  VARCHAR(64),
    memo                TEXT,
    ykz_kbn             VARCHAR(16),
    frequency           VARCHAR(32),
    frequency_name      TEXT,
    start_date          VARCHAR(10),
    end_date            VARCHAR(10),
    administration      TEXT,
    dose                VARCHAR(32),
    dose_unit           VARCHAR(32),
    PRIMARY KEY (facility_id, catch_id, bundle_seq, item_seq),
    FOREIGN KEY (facility_id, catch_id, bundle_seq) REFERENCES bundle (facility_id, catch_id, bundle_seq)
);

CREATE TABLE lab_module (
    id              BIGSERIAL PRIMARY KEY,
    facility_id     VARCHAR(64) NOT NULL,
    patient_id      VARCHAR(64) NOT NULL,
    catch_id        VARCHAR(64) NOT NULL CHECK (catch_id <> ''),
    lab_center_code VARCHAR(32),
    -- yyyy-MM-dd; PHR JSON shows it as yyyy年M月d日.
    sample_date     VARCHAR(10) NOT NULL,
    report_format   VARCHAR(32),
    UNIQUE (facility_id, catch_id),
    FOREIGN KEY (facility_id, patient_id) REFERENCES patient (facility_id, patient_id)
);
CREATE INDEX lab_module_patient_idx ON lab_module (facility_id, patient_id, sample_date DESC, id DESC);

CREATE TABLE lab_item (
    facility_id     VARCHAR(64) NOT NULL,
    catch_id        VARCHAR(64) NOT NULL,
    item_seq        INTEGER NOT NULL,
    lab_code        VARCHAR(32),
    lipemia         VARCHAR(16),
    hemolysis       VARCHAR(16),
    dialysis        VARCHAR(16),
    report_status   VARCHAR(16),
    group_code      VARCHAR(32),
    group_name      TEXT,
    parent_code     VARCHAR(32),
    item_code       VARCHAR(32),
    medis_code      VARCHAR(32),
    item_name       TEXT NOT NULL,
    -- Empty, NULL or 'N' is normal; anything else (H, L, A, ...) is abnormal.
    abnormal_flg    VARCHAR(8),
    normal_value    TEXT,
    value           TEXT,
    unit            VARCHAR(32),
    specimen_code   VARCHAR(32),
    specimen_name   TEXT,
    comment_code1   VARCHAR(32),
    comment1        TEXT,
    comment_code2   VARCHAR(32),
    comment2        TEXT,
    sort_key        VARCHAR(32),
    PRIMARY KEY (facility_id, catch_id, item_seq),
    FOREIGN KEY (facility_id, catch_id) REFERENCES lab_module (facility_id, catch_id)
);

CREATE TABLE phr_image (
    id            BIGSERIAL PRIMARY KEY,
    facility_id   VARCHAR(64) NOT NULL,
    patient_id    VARCHAR(64) NOT NULL,
    object_key    VARCHAR(512) NOT NULL,
    content_type  VARCHAR(64) NOT NULL DEFAULT 'image/jpeg',
    size_bytes    BIGINT NOT NULL,
    sha256        VARCHAR(64) NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE INDEX phr_image_patient_idx ON phr_image (facility_id, patient_id, created_at DESC, id DESC);
