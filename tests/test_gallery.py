import numpy as np
import psycopg2
import pytest
from recognition_service.recognition.gallery import Gallery
from recognition_service.storage.migrate import apply_migrations

DIM = 8
FP = "test-model"


@pytest.fixture
def conn(database_url):
    conn = psycopg2.connect(database_url)
    apply_migrations(conn)
    conn.commit()
    yield conn
    conn.close()


def unit(*values):
    v = np.zeros(DIM, np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


def add(conn, student, vec, fp=FP):
    with conn.cursor() as cur:
        cur.execute("INSERT INTO students VALUES (%s, %s) ON CONFLICT DO NOTHING", (student, student.upper()))
        cur.execute("INSERT INTO faces (student_id, model_fingerprint, embedding, det_score, bbox, image_sha256) "
                    "VALUES (%s, %s, %s, 0.9, '{0,0,1,1}', md5(random()::text)) RETURNING face_id",
                    (student, fp, vec.astype(np.float32).tobytes()))
        face_id = cur.fetchone()[0]
    conn.commit()
    return face_id


def remove(conn, face_id):
    with conn.cursor() as cur:
        cur.execute("DELETE FROM faces WHERE face_id = %s", (face_id,))
    conn.commit()


def best(gallery, conn, vec, **kw):
    gallery.refresh(conn)
    kw.setdefault("threshold", 0.5)
    kw.setdefault("margin", 0.05)
    return gallery.match(vec[None, :], **kw)[0]


def test_best_face_of_a_student_counts(conn):
    add(conn, "a", unit(1, 0))
    add(conn, "a", unit(0, 0, 1))
    add(conn, "b", unit(1, 0.6))
    g = Gallery(FP, DIM)
    m = best(g, conn, unit(0, 0, 1, 0.1))
    assert m.student_id == "a" and m.similarity > 0.99


def test_threshold_and_margin(conn):
    add(conn, "a", unit(1, 0))
    add(conn, "b", unit(1, 0.05))
    g = Gallery(FP, DIM)
    m = best(g, conn, unit(1, 0.02))
    assert m.student_id is None and m.reason == "ambiguous"
    m = best(g, conn, unit(1, 0.02), margin=0.0)
    assert m.student_id == "a"
    m = best(g, conn, unit(0, 0, 0, 1))
    assert m.student_id is None and m.reason == "below_threshold"


def test_roster_limits_candidates(conn):
    add(conn, "a", unit(1, 0))
    add(conn, "b", unit(0, 1))
    g = Gallery(FP, DIM)
    assert best(g, conn, unit(1, 0.1), roster=["b"]).student_id is None
    assert best(g, conn, unit(0.1, 1), roster=["b", "unknown"]).student_id == "b"
    assert best(g, conn, unit(1, 0), roster=[]).reason == "no_candidates"


def test_second_best_student_found_beyond_many_faces_of_the_best(conn):
    for i in range(20):  # more faces of 'a' than rows examined per probe
        add(conn, "a", unit(1, 0.001 * i))
    add(conn, "b", unit(1, 0.03))
    g = Gallery(FP, DIM)
    assert best(g, conn, unit(1, 0)).reason == "ambiguous"


def test_roster_search_also_looks_beyond_many_faces_of_the_best(conn):
    for i in range(20):
        add(conn, "a", unit(1, 0.001 * i))
    add(conn, "b", unit(1, 0.03))
    add(conn, "c", unit(1, 0.02))
    g = Gallery(FP, DIM)
    assert best(g, conn, unit(1, 0), roster=["a", "b"]).reason == "ambiguous"
    assert best(g, conn, unit(1, 0), roster=["a"]).student_id == "a"


def test_matching_while_the_gallery_changes(conn, database_url):
    import threading

    add(conn, "a", unit(1, 0))
    g = Gallery(FP, DIM)
    g.refresh(conn)
    failures, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            if best(g, conn_for_reader, unit(1, 0)).student_id != "a":
                failures.append("lost a")

    conn_for_reader = psycopg2.connect(database_url)
    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(30):
            face = add(conn, f"x{i}", unit(0, 1, i))
            g.refresh(conn)
            remove(conn, face)
            g.refresh(conn)
    finally:
        stop.set()
        t.join()
        conn_for_reader.close()
    assert not failures and g.size == 1


def test_incremental_refresh_adds_and_removes(conn):
    g = Gallery(FP, DIM)
    g.refresh(conn)
    assert g.size == 0
    fa = add(conn, "a", unit(1, 0))
    add(conn, "b", unit(0, 1))
    add(conn, "c", unit(0, 1), fp="other-model")
    assert best(g, conn, unit(1, 0)).student_id == "a"
    assert g.size == 2
    remove(conn, fa)
    assert best(g, conn, unit(1, 0)).student_id is None
    assert g.size == 1


def test_gap_in_change_log_triggers_full_reload(conn):
    g = Gallery(FP, DIM)
    add(conn, "a", unit(1, 0))
    g.refresh(conn)
    add(conn, "b", unit(0, 1))
    with conn.cursor() as cur:
        cur.execute("DELETE FROM gallery_changes")  # as if pruned
    conn.commit()
    assert best(g, conn, unit(0, 1)).student_id == "b"
    assert g.size == 2


def test_growth_and_compaction_keep_results(conn):
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(1500, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    g = Gallery(FP, DIM)
    g.refresh(conn)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO students SELECT 's' || i, 'S' FROM generate_series(0, 1499) i")
        for i, v in enumerate(vecs):
            cur.execute("INSERT INTO faces (student_id, model_fingerprint, embedding, det_score, bbox, image_sha256)"
                        " VALUES (%s, %s, %s, 0.9, '{0,0,1,1}', %s)", (f"s{i}", FP, v.tobytes(), str(i)))
    conn.commit()
    g.refresh(conn)
    assert g.size == 1500
    with conn.cursor() as cur:
        cur.execute("DELETE FROM faces WHERE student_id <> 's1499'")
    conn.commit()
    m = best(g, conn, vecs[1499], threshold=0.9)
    assert m.student_id == "s1499" and g.size == 1
