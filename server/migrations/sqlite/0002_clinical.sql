-- Clinical data behind PHR-01..05, 08..11 and the image table PHR-07 reads (same tables and columns as the
-- PostgreSQL migration; see it for the reasoning: facility-first keys, natural parent keys, TEXT dates).

CREATE TABLE patient (
    facility_id  TEXT NOT NULL REFERENCES facility (facility_id),
    patient_id   TEXT NOT NULL,
    name         TEXT NOT NULL,
    sex          TEXT,
    birthday     TEXT,
    zip_code     TEXT,
    address      TEXT,
    telephone    TEXT,
    PRIMARY KEY (facility_id, patient_id)
);

CREATE TABLE phr_key (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    facility_id  TEXT NOT NULL,
    patient_id   TEXT NOT NULL,
    access_key   TEXT NOT NULL UNIQUE,
    secret_key   TEXT NOT NULL,
    registered   TEXT NOT NULL,
    UNIQUE (facility_id, patient_id),
    FOREIGN KEY (facility_id, patient_id) REFERENCES patient (facility_id, patient_id)
);

CREATE TABLE allergy (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    facility_id      TEXT NOT NULL,
    patient_id       TEXT NOT NULL,
    factor           TEXT NOT NULL,
    severity         TEXT,
    identified_date  TEXT,
    memo             TEXT,
    FOREIGN KEY (facility_id, patient_id) REFERENCES patient (facility_id, patient_id)
);
CREATE INDEX allergy_patient_idx ON allergy (facility_id, patient_id, id);

CREATE TABLE disease (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    facility_id     TEXT NOT NULL,
    patient_id      TEXT NOT NULL,
    diagnosis       TEXT NOT NULL,
    diagnosis_code  TEXT,
    started         TEXT NOT NULL,
    ended           TEXT,
    -- 'active' or 'inactive'; PHR-05 lists the active ones.
    status          TEXT NOT NULL CHECK (status IN ('active', 'inactive')),
    FOREIGN KEY (facility_id, patient_id) REFERENCES patient (facility_id, patient_id)
);
CREATE INDEX disease_patient_idx ON disease (facility_id, patient_id, status, started DESC, id DESC);

CREATE TABLE document (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    facility_id      TEXT NOT NULL,
    patient_id       TEXT NOT NULL,
    catch_id         TEXT NOT NULL CHECK (catch_id <> ''),
    started          TEXT NOT NULL,
    confirmed        TEXT,
    status           TEXT,
    physician_id     TEXT,
    physician_name   TEXT,
    department       TEXT,
    department_desc  TEXT,
    license          TEXT,
    rp_request       INTEGER,
    rp_reply         TEXT,
    rp_reply_to      TEXT,
    UNIQUE (facility_id, catch_id),
    FOREIGN KEY (facility_id, patient_id) REFERENCES patient (facility_id, patient_id)
);
CREATE INDEX document_patient_idx ON document (facility_id, patient_id, started DESC, id DESC);

CREATE TABLE bundle (
    facility_id        TEXT NOT NULL,
    catch_id           TEXT NOT NULL,
    -- Position of the bundle inside its document.
    bundle_seq         INTEGER NOT NULL,
    bundle_id          TEXT NOT NULL,
    -- medOrder, injectionOrder, testOrder, treatmentOrder, ...
    ent                TEXT NOT NULL,
    role               TEXT,
    number             TEXT,
    cls_name           TEXT,
    cls_code           TEXT,
    cls_code_system    TEXT,
    admin              TEXT,
    admin_code         TEXT,
    admin_code_system  TEXT,
    admin_memo         TEXT,
    bundle_number      TEXT,
    memo               TEXT,
    insurance          TEXT,
    order_name         TEXT,
    PRIMARY KEY (facility_id, catch_id, bundle_seq),
    FOREIGN KEY (facility_id, catch_id) REFERENCES document (facility_id, catch_id)
);

CREATE TABLE claim_item (
    facility_id         TEXT NOT NULL,
    catch_id            TEXT NOT NULL,
    bundle_seq          INTEGER NOT NULL,
    -- Position of the item inside its bundle.
    item_seq            INTEGER NOT NULL,
    name                TEXT NOT NULL,
    code                TEXT,
    code_system         TEXT,
    cls_code            TEXT,
    cls_code_system     TEXT,
    quantity            TEXT,
    unit                TEXT,
    number_code         TEXT,
    number_code_system  TEXT,
    memo                TEXT,
    ykz_kbn             TEXT,
    frequency           TEXT,
    frequency_name      TEXT,
    start_date          TEXT,
    end_date            TEXT,
    administration      TEXT,
    dose                TEXT,
    dose_unit           TEXT,
    PRIMARY KEY (facility_id, catch_id, bundle_seq, item_seq),
    FOREIGN KEY (facility_id, catch_id, bundle_seq) REFERENCES bundle (facility_id, catch_id, bundle_seq)
);

CREATE TABLE lab_module (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    facility_id     TEXT NOT NULL,
    patient_id      TEXT NOT NULL,
    catch_id        TEXT NOT NULL CHECK (catch_id <> ''),
    lab_center_code TEXT,
    -- yyyy-MM-dd; PHR JSON shows it as yyyy年M月d日.
    sample_date     TEXT NOT NULL,
    report_format   TEXT,
    UNIQUE (facility_id, catch_id),
    FOREIGN KEY (facility_id, patient_id) REFERENCES patient (facility_id, patient_id)
);
CREATE INDEX lab_module_patient_idx ON lab_module (facility_id, patient_id, sample_date DESC, id DESC);

CREATE TABLE lab_item (
    facility_id     TEXT NOT NULL,
    catch_id        TEXT NOT NULL,
    item_seq        INTEGER NOT NULL,
    lab_code        TEXT,
    lipemia         TEXT,
    hemolysis       TEXT,
    dialysis        TEXT,
    report_status   TEXT,
    group_code      TEXT,
    group_name      TEXT,
    parent_code     TEXT,
    item_code       TEXT,
    medis_code      TEXT,
    item_name       TEXT NOT NULL,
    -- Empty, NULL or 'N' is normal; anything else (H, L, A, ...) is abnormal.
    abnormal_flg    TEXT,
    normal_value    TEXT,
    value           TEXT,
    unit            TEXT,
    specimen_code   TEXT,
    specimen_name   TEXT,
    comment_code1   TEXT,
    comment1        TEXT,
    comment_code2   TEXT,
    comment2        TEXT,
    sort_key        TEXT,
    PRIMARY KEY (facility_id, catch_id, item_seq),
    FOREIGN KEY (facility_id, catch_id) REFERENCES lab_module (facility_id, catch_id)
);

CREATE TABLE phr_image (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    facility_id   TEXT NOT NULL,
    patient_id    TEXT NOT NULL,
    object_key    TEXT NOT NULL,
    content_type  TEXT NOT NULL DEFAULT 'image/jpeg',
    size_bytes    INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE INDEX phr_image_patient_idx ON phr_image (facility_id, patient_id, created_at DESC, id DESC);
