"""LocalKeyStore and the master key: real files in tmp_path, real AES-GCM."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import threading
from pathlib import Path

import pytest

from bastion.core.errors import ConfigError, CryptoError, IntegrityError, InvalidInput
from bastion.core.ids import KeyId
from bastion.core.settings import Settings
from bastion.crypto import keystore as keystore_module
from bastion.crypto.envelope import EnvelopeCipher
from bastion.crypto.keystore import LocalKeyStore
from bastion.crypto.masterkey import MasterKey, generate_master_key_b64, resolve_master_key


@pytest.fixture
def master() -> MasterKey:
    return MasterKey.generate()


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path / "home" / "keys"


@pytest.fixture
def store(keys_dir: Path, master: MasterKey) -> LocalKeyStore:
    return LocalKeyStore.create(keys_dir, master)


def _all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _kek_files(keys_dir: Path) -> list[Path]:
    return sorted((keys_dir / "kek").glob("*.json"))


# ------------------------------------------------------------------ create / open


def test_create_then_open_round_trip(keys_dir: Path, master: MasterKey) -> None:
    store = LocalKeyStore.create(keys_dir, master)
    key_id, key = store.create_data_key()
    assert len(key) == 32

    reopened = LocalKeyStore.open(keys_dir, master)
    assert reopened.data_key(key_id) == key
    assert reopened.active_kek_id() == store.active_kek_id()
    assert reopened.list_data_keys() == [key_id]


def test_create_is_idempotent_with_the_same_master_key(keys_dir: Path, master: MasterKey) -> None:
    first = LocalKeyStore.create(keys_dir, master)
    key_id, key = first.create_data_key()
    again = LocalKeyStore.create(keys_dir, master)
    assert again.active_kek_id() == first.active_kek_id()
    assert again.data_key(key_id) == key
    assert len(_kek_files(keys_dir)) == 1


def test_open_without_a_store_is_keystore_missing(tmp_path: Path, master: MasterKey) -> None:
    with pytest.raises(CryptoError) as err:
        LocalKeyStore.open(tmp_path / "nothing", master)
    assert err.value.code == "crypto.keystore_missing"
    assert "bastion init" in err.value.message


def test_wrong_master_key_is_detected_at_open(keys_dir: Path, store: LocalKeyStore) -> None:
    with pytest.raises(IntegrityError) as err:
        LocalKeyStore.open(keys_dir, MasterKey.generate())
    assert err.value.code == "crypto.wrong_master_key"


def test_create_with_another_master_key_is_refused(keys_dir: Path, store: LocalKeyStore) -> None:
    with pytest.raises(IntegrityError) as err:
        LocalKeyStore.create(keys_dir, MasterKey.generate())
    assert err.value.code == "crypto.wrong_master_key"


def test_create_finishes_a_store_interrupted_before_its_first_kek(
    keys_dir: Path, master: MasterKey, store: LocalKeyStore
) -> None:
    for path in _kek_files(keys_dir):
        path.unlink()
    (keys_dir / "active").unlink()
    with pytest.raises(CryptoError) as err:
        LocalKeyStore.open(keys_dir, master)
    assert err.value.code == "crypto.keystore_missing"
    repaired = LocalKeyStore.create(keys_dir, master)
    key_id, key = repaired.create_data_key()
    assert LocalKeyStore.open(keys_dir, master).data_key(key_id) == key


# ------------------------------------------------------------------ files on disk


def test_files_are_0600_and_dirs_0700(keys_dir: Path, store: LocalKeyStore) -> None:
    for _ in range(3):
        store.create_data_key()
    key_id, _ = store.create_data_key()
    store.named_key("pepper")
    store.shred_data_key(key_id)
    store.rotate_kek()

    files = _all_files(keys_dir)
    assert len(files) >= 8
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    dirs = [keys_dir, *(p for p in keys_dir.rglob("*") if p.is_dir())]
    assert len(dirs) == 5
    for path in dirs:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path


def test_no_key_material_appears_in_any_file(keys_dir: Path, store: LocalKeyStore) -> None:
    secrets = [store.create_data_key()[1] for _ in range(5)]
    secrets.append(store.named_key("pepper"))
    shredded_id, shredded_key = store.create_data_key()
    secrets.append(shredded_key)
    store.shred_data_key(shredded_id)
    store.rotate_kek()

    blobs = [p.read_bytes() for p in _all_files(keys_dir)]
    for secret in secrets:
        forms = [
            secret,
            base64.b64encode(secret),
            base64.urlsafe_b64encode(secret),
            base64.urlsafe_b64encode(secret).rstrip(b"="),
            secret.hex().encode(),
        ]
        for blob in blobs:
            for form in forms:
                assert form not in blob


def test_swapped_data_key_files_fail_integrity(keys_dir: Path, store: LocalKeyStore) -> None:
    a, _ = store.create_data_key()
    b, _ = store.create_data_key()
    a_file = keys_dir / "dek" / f"{a}.json"
    b_file = keys_dir / "dek" / f"{b}.json"

    # Plain copy: the record names the wrong key.
    shutil.copyfile(a_file, b_file)
    with pytest.raises(IntegrityError) as err:
        store.data_key(b)
    assert err.value.code == "crypto.integrity"

    # Copy with the record's key id rewritten: the GCM tag (AAD binds the key id) catches it.
    record = json.loads(a_file.read_text())
    record["key_id"] = b
    b_file.write_text(json.dumps(record))
    with pytest.raises(IntegrityError) as err:
        store.data_key(b)
    assert err.value.code == "crypto.integrity"


def test_tampered_wrapped_key_fails_integrity(keys_dir: Path, store: LocalKeyStore) -> None:
    key_id, _ = store.create_data_key()
    path = keys_dir / "dek" / f"{key_id}.json"
    record = json.loads(path.read_text())
    raw = bytearray(base64.urlsafe_b64decode(record["wrapped"]))
    raw[20] ^= 0x01
    record["wrapped"] = base64.urlsafe_b64encode(bytes(raw)).decode()
    path.write_text(json.dumps(record))
    with pytest.raises(IntegrityError) as err:
        store.data_key(key_id)
    assert err.value.code == "crypto.integrity"
    assert key_id in err.value.message


def test_corrupt_json_fails_integrity(keys_dir: Path, store: LocalKeyStore) -> None:
    key_id, _ = store.create_data_key()
    (keys_dir / "dek" / f"{key_id}.json").write_bytes(b"{not json")
    with pytest.raises(IntegrityError) as err:
        store.data_key(key_id)
    assert err.value.code == "crypto.integrity"


# ------------------------------------------------------------------ rotation


def test_rotate_kek_rewraps_everything_and_destroys_the_old_kek(
    keys_dir: Path, master: MasterKey, store: LocalKeyStore
) -> None:
    cipher = EnvelopeCipher(store, chunk_size=64)
    blob, _ = cipher.encrypt(b"sealed before rotation" * 10, aad=b"x")
    keys = dict(store.create_data_key() for _ in range(4))
    pepper = store.named_key("pepper")
    old_kek = store.active_kek_id()

    report = store.rotate_kek()

    assert report.retired_kek_ids == (old_kek,)
    assert report.new_kek_id != old_kek
    assert report.rewrapped_data_keys == 5
    assert report.rewrapped_named_keys == 1
    assert store.active_kek_id() == report.new_kek_id
    assert [p.stem for p in _kek_files(keys_dir)] == [report.new_kek_id]
    for path in (keys_dir / "dek").glob("*.json"):
        assert json.loads(path.read_text())["kek_id"] == report.new_kek_id

    reopened = LocalKeyStore.open(keys_dir, master)
    for key_id, key in keys.items():
        assert reopened.data_key(key_id) == key
    assert reopened.named_key("pepper") == pepper
    assert EnvelopeCipher(reopened).decrypt(blob, aad=b"x") == b"sealed before rotation" * 10


def test_rotation_interrupted_mid_rewrap_still_opens_and_resumes(
    keys_dir: Path, master: MasterKey, store: LocalKeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = dict(store.create_data_key() for _ in range(5))
    pepper = store.named_key("pepper")
    old_kek = store.active_kek_id()
    real_rewrap = LocalKeyStore._rewrap_record
    calls = 0

    def crash_after_two(self: LocalKeyStore, *args: object, **kwargs: object) -> int:
        nonlocal calls
        calls += 1
        if calls > 2:
            raise KeyboardInterrupt("simulated crash")
        return real_rewrap(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(LocalKeyStore, "_rewrap_record", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        store.rotate_kek()
    monkeypatch.undo()

    # On disk now: two KEKs, a mix of DEKs wrapped by each, the old one still active.
    assert len(_kek_files(keys_dir)) == 2
    wrapped_by = {json.loads(p.read_text())["kek_id"] for p in (keys_dir / "dek").glob("*.json")}
    assert len(wrapped_by) == 2

    reopened = LocalKeyStore.open(keys_dir, master)
    assert reopened.active_kek_id() == old_kek
    for key_id, key in keys.items():
        assert reopened.data_key(key_id) == key
    assert reopened.named_key("pepper") == pepper

    report = reopened.rotate_kek()
    assert len(report.retired_kek_ids) == 2
    assert [p.stem for p in _kek_files(keys_dir)] == [report.new_kek_id]
    final = LocalKeyStore.open(keys_dir, master)
    for key_id, key in keys.items():
        assert final.data_key(key_id) == key
    assert final.named_key("pepper") == pepper


def test_rotation_interrupted_while_destroying_old_keks_still_opens(
    keys_dir: Path, master: MasterKey, store: LocalKeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = dict(store.create_data_key() for _ in range(3))

    def crash(path: Path) -> None:
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(keystore_module, "_destroy_file", crash)
    with pytest.raises(KeyboardInterrupt):
        store.rotate_kek()
    monkeypatch.undo()

    reopened = LocalKeyStore.open(keys_dir, master)
    for key_id, key in keys.items():
        assert reopened.data_key(key_id) == key
    reopened.rotate_kek()
    assert len(_kek_files(keys_dir)) == 1


def test_rotation_by_another_instance_is_seen(keys_dir: Path, master: MasterKey) -> None:
    # Two instances on one directory stand in for two processes.
    a = LocalKeyStore.create(keys_dir, master)
    b = LocalKeyStore.open(keys_dir, master)
    key_id, key = a.create_data_key()
    assert b.data_key(key_id) == key
    report = a.rotate_kek()
    assert b.active_kek_id() == report.new_kek_id
    assert b.data_key(key_id) == key
    new_id, new_key = b.create_data_key()
    assert json.loads((keys_dir / "dek" / f"{new_id}.json").read_text())["kek_id"] == (
        report.new_kek_id
    )
    assert a.data_key(new_id) == new_key


# ------------------------------------------------------------------ shredding


def test_shred_makes_the_key_unrecoverable(keys_dir: Path, store: LocalKeyStore) -> None:
    key_id, _ = store.create_data_key()
    kept, kept_key = store.create_data_key()
    record = store.shred_data_key(key_id)

    assert record.key_id == key_id
    assert record.kek_id == store.active_kek_id()
    with pytest.raises(CryptoError) as err:
        store.data_key(key_id)
    assert err.value.code == "crypto.key_shredded"
    assert not (keys_dir / "dek" / f"{key_id}.json").exists()
    tomb = json.loads((keys_dir / "shredded" / f"{key_id}.json").read_text())
    assert tomb["key_id"] == key_id
    assert "wrapped" not in tomb
    assert store.list_data_keys() == [kept]
    assert store.data_key(kept) == kept_key


def test_shredding_twice_returns_the_original_record(store: LocalKeyStore) -> None:
    key_id, _ = store.create_data_key()
    first = store.shred_data_key(key_id)
    assert store.shred_data_key(key_id) == first


def test_shred_finishes_an_interrupted_shred(keys_dir: Path, store: LocalKeyStore) -> None:
    key_id, _ = store.create_data_key()
    dek_file = keys_dir / "dek" / f"{key_id}.json"
    saved = dek_file.read_bytes()
    first = store.shred_data_key(key_id)
    dek_file.write_bytes(saved)  # as if the crash hit between tombstone and unlink
    with pytest.raises(CryptoError) as err:
        store.data_key(key_id)
    assert err.value.code == "crypto.key_shredded"
    assert store.shred_data_key(key_id) == first
    assert not dek_file.exists()


def test_rotation_finishes_an_interrupted_shred(keys_dir: Path, store: LocalKeyStore) -> None:
    key_id, _ = store.create_data_key()
    dek_file = keys_dir / "dek" / f"{key_id}.json"
    saved = dek_file.read_bytes()
    store.shred_data_key(key_id)
    dek_file.write_bytes(saved)
    report = store.rotate_kek()
    assert report.rewrapped_data_keys == 0
    assert not dek_file.exists()


def test_a_backup_copy_of_a_shredded_key_dies_with_its_kek(
    keys_dir: Path, store: LocalKeyStore
) -> None:
    key_id, _ = store.create_data_key()
    dek_file = keys_dir / "dek" / f"{key_id}.json"
    backup = dek_file.read_bytes()
    store.shred_data_key(key_id)
    store.rotate_kek()
    # Restore the old backup entirely (key file back, tombstone gone).
    dek_file.write_bytes(backup)
    (keys_dir / "shredded" / f"{key_id}.json").unlink()
    with pytest.raises(CryptoError) as err:
        store.data_key(key_id)
    assert err.value.code == "crypto.key_not_found"


@pytest.mark.parametrize(
    "key_id",
    ["dek_01JD3ZZZZZZZZZZZZZZZZZZZZZ", "../../etc/passwd", "", "kek_01JD3ZZZZZZZZZZZZZZZZZZZZZ"],
)
def test_unknown_keys_are_key_not_found(store: LocalKeyStore, key_id: str) -> None:
    with pytest.raises(CryptoError) as err:
        store.data_key(KeyId(key_id))
    assert err.value.code == "crypto.key_not_found"
    with pytest.raises(CryptoError) as err:
        store.shred_data_key(KeyId(key_id))
    assert err.value.code == "crypto.key_not_found"


# ------------------------------------------------------------------ named keys


def test_named_key_is_stable_across_reopen(
    keys_dir: Path, master: MasterKey, store: LocalKeyStore
) -> None:
    pepper = store.named_key("token-pepper")
    assert len(pepper) == 32
    assert store.named_key("token-pepper") == pepper
    assert store.named_key("other") != pepper
    assert LocalKeyStore.open(keys_dir, master).named_key("token-pepper") == pepper


@pytest.mark.parametrize("name", ["", "A", "a_b", "a/b", "../x", "a.b", "x" * 65, "ключ"])
def test_bad_key_names_are_rejected(store: LocalKeyStore, name: str) -> None:
    with pytest.raises(InvalidInput) as err:
        store.named_key(name)
    assert err.value.code == "crypto.bad_key_name"


# ------------------------------------------------------------------ concurrency


def test_concurrent_create_data_key_gives_unique_working_keys(
    keys_dir: Path, master: MasterKey, store: LocalKeyStore
) -> None:
    results: list[tuple[KeyId, bytes]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        for _ in range(10):
            pair = store.create_data_key()
            with lock:
                results.append(pair)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(results) == 80
    assert len({key_id for key_id, _ in results}) == 80
    assert len({key for _, key in results}) == 80
    reopened = LocalKeyStore.open(keys_dir, master)
    for key_id, key in results:
        assert reopened.data_key(key_id) == key


# ------------------------------------------------------------------ master key


def _settings(home: Path, master_key: str | None = None) -> Settings:
    return Settings(home=home, master_key=master_key)


def test_master_key_generated_once_with_private_modes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    key = resolve_master_key(_settings(home), create=True)
    path = home / "master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    again = resolve_master_key(_settings(home), create=False)
    assert again.secret_bytes() == key.secret_bytes()
    assert [p.name for p in home.iterdir()] == ["master.key"]  # no temp file left


def test_master_key_missing_without_create(tmp_path: Path) -> None:
    with pytest.raises(CryptoError) as err:
        resolve_master_key(_settings(tmp_path / "home"), create=False)
    assert err.value.code == "crypto.keystore_missing"
    assert "bastion init" in err.value.message
    assert "BASTION_MASTER_KEY" in err.value.message


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_group_or_world_readable_master_key_file_is_refused(tmp_path: Path, mode: int) -> None:
    home = tmp_path / "home"
    resolve_master_key(_settings(home), create=True)
    os.chmod(home / "master.key", mode)
    with pytest.raises(ConfigError) as err:
        resolve_master_key(_settings(home), create=False)
    assert err.value.code == "crypto.master_key_permissions"


def test_master_key_symlink_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    target = tmp_path / "elsewhere.key"
    target.write_text(generate_master_key_b64())
    os.chmod(target, 0o600)
    (home / "master.key").symlink_to(target)
    with pytest.raises(ConfigError) as err:
        resolve_master_key(_settings(home), create=False)
    assert err.value.code == "crypto.master_key_permissions"


def test_master_key_from_settings_wins(tmp_path: Path) -> None:
    text = generate_master_key_b64()
    key = resolve_master_key(_settings(tmp_path / "home", text), create=True)
    assert key.to_b64() == text
    assert not (tmp_path / "home" / "master.key").exists()


def test_master_key_accepts_padded_and_unpadded_base64url() -> None:
    raw = bytes(range(32))
    padded = base64.urlsafe_b64encode(raw).decode()
    assert padded.endswith("=")
    assert MasterKey.from_b64(padded).secret_bytes() == raw
    assert MasterKey.from_b64(padded.rstrip("=")).secret_bytes() == raw
    assert MasterKey.from_b64(f"  {padded}\n").secret_bytes() == raw


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not base64 at all!",
        base64.urlsafe_b64encode(bytes(31)).decode(),
        base64.urlsafe_b64encode(bytes(33)).decode(),
        base64.b64encode(b"\xfb" * 32).decode(),  # standard alphabet ('+', '/'), not url-safe
        "A",
    ],
)
def test_bad_master_key_text_is_rejected(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        MasterKey.from_b64(text)
    assert err.value.code == "crypto.bad_master_key"


def test_master_key_repr_hides_the_key(tmp_path: Path) -> None:
    key = MasterKey.generate()
    for shown in (repr(key), str(key), f"{key}"):
        assert key.to_b64() not in shown
        assert key.secret_bytes().hex() not in shown
    store = LocalKeyStore.create(tmp_path / "keys", key)
    assert key.to_b64() not in repr(store)


def test_existing_home_keeps_its_mode(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)  # noqa: S103 - a pre-existing, looser home is the case under test
    resolve_master_key(_settings(home), create=True)
    assert stat.S_IMODE(home.stat().st_mode) == 0o755
    assert stat.S_IMODE((home / "master.key").stat().st_mode) == 0o600
