from devtools.shared import sample


def test_service_starts_without_a_model_and_says_why(make_app, tmp_path):
    missing = tmp_path / "no-such-model"
    client = make_app(MODEL_DIR=str(missing)).test_client()
    r = client.get("/health")
    assert r.status_code == 503 and r.json["status"] == "degraded"
    assert r.json["model"]["loaded"] is False and "does not exist" in r.json["model"]["error"]
    assert any("model" in reason for reason in r.json["reasons"])
    assert r.json["database"] == "ok"
    r = client.post("/api/v1/recognize", data=sample("obama.jpg"), content_type="image/jpeg")
    assert r.status_code == 503 and r.json["error"]["code"] == "model_unavailable"
    assert client.get("/health/ready").status_code == 503
    assert client.get("/health/live").status_code == 200
    # Student records do not need the model.
    assert client.put("/api/v1/students/a", json={"name": "A"}).status_code == 201


def test_model_installed_later_is_picked_up(make_app, tmp_path):
    from devtools.shared import MODEL_PACK

    pack = tmp_path / "pack"
    client = make_app(MODEL_DIR=str(pack), MODEL_RETRY_S=0).test_client()
    assert client.get("/health").status_code == 503
    pack.mkdir()
    for f in MODEL_PACK.glob("*.onnx"):
        (pack / f.name).symlink_to(f)
    r = client.get("/health")
    assert r.status_code == 200 and r.json["model"]["loaded"] is True


def test_health_reports_the_model(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.json["status"] == "ok"
    model = r.json["model"]
    assert model["name"] == "buffalo_s_int8" and model["embedding_size"] == 512
    assert model["recognizer"] == "w600k_mbf_int8.onnx" and len(model["fingerprint"]) == 64
    assert r.json["uptime_seconds"] >= 0 and r.json["version"]
    assert client.get("/health/ready").json["status"] == "ready"
