"""Loading the config: the example loads, ${VAR} / ${VAR:-default} substitution, and one test per kind of
error, each naming file:line and saying what to write instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import load_config
from engine.errors import ConfigError
from engine.mapping import expand_routes, load_router

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """\
engine:
  store:
    path: var/test.db
channels:
  - name: his-adt
    type: mllp
    mllp:
      listen: 127.0.0.1:0
      ack: on_receipt
destinations:
  - name: outbox
    type: file
    routes: ["*"]
    file: {dir: var/outbox}
routes: []
"""
"""A valid config; each error test changes one line of it (line numbers below refer to this text)."""


def write(tmp_path: Path, text: str) -> Path:
    file = tmp_path / "config.yaml"
    file.write_text(text, encoding="utf-8")
    return file


def error_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    file = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(file, env={} if env is None else env)
    assert caught.value.file == str(file)
    return caught.value


# --- what loads ------------------------------------------------------------------------------------


def test_the_example_config_loads_with_its_defaults() -> None:
    config = load_config(REPO / "config.example.yaml", env={})
    assert [(c.name, c.type, c.enabled) for c in config.channels] == [
        ("his-adt", "mllp", True), ("http-in", "http", True), ("mq-in", "amqp", False),
        ("zone-in", "file", False)]
    assert config.channel("mq-in").settings["url"] == "amqp://guest:guest@127.0.0.1:5672/"  # the default
    assert [(d.name, d.type) for d in config.destinations] == [("outbox", "file"), ("zone-out", "export")]
    assert config.engine.store.path == REPO / "var" / "yonglink.db"  # relative to the config file
    assert config.engine.store.dedupe_window == 24 * 3600
    assert config.engine.admin.token is None  # ${YONGLINK_ADMIN_TOKEN:-} left empty
    assert config.engine.mapping_workers == 1
    assert len(expand_routes(config.routes, config=config)) == len(list((REPO / "mappings").glob("*.yaml")))


def test_the_minimal_config_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), env={})
    assert config.channel("his-adt").settings == {"listen": "127.0.0.1:0", "ack": "on_receipt"}
    assert config.line_of("channels", 0, "mllp", "ack") == 9


# --- ${VAR} and ${VAR:-default} --------------------------------------------------------------------


def test_variables_are_taken_from_the_environment_and_defaults_fill_the_unset(tmp_path: Path) -> None:
    text = MINIMAL.replace("path: var/test.db", "path: ${STORE_DIR}/test.db") \
                  .replace("listen: 127.0.0.1:0", "listen: ${MLLP_HOST:-127.0.0.1}:${MLLP_PORT:-2575}") \
                  .replace("engine:\n", "engine:\n  admin:\n    token: ${ADMIN_TOKEN:-}\n")
    config = load_config(write(tmp_path, text), env={"STORE_DIR": "data", "MLLP_PORT": "2600"})
    assert config.engine.store.path == tmp_path / "data" / "test.db"
    assert config.channel("his-adt").settings["listen"] == "127.0.0.1:2600"  # default host, env port
    assert config.engine.admin.token is None  # an empty default means "not set"


def test_the_process_environment_is_used_when_none_is_given(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YONGLINK_TEST_TOKEN", "s3cret")
    text = MINIMAL.replace("engine:\n", "engine:\n  admin:\n    token: ${YONGLINK_TEST_TOKEN}\n")
    assert load_config(write(tmp_path, text)).engine.admin.token == "s3cret"


def test_variables_in_comment_lines_are_left_alone(tmp_path: Path) -> None:
    text = MINIMAL.replace("routes: []\n", "# routes: [${NOT_SET}]\nroutes: []\n")
    assert load_config(write(tmp_path, text), env={}).routes == ()


# --- one test per kind of error: file:line and what to do -------------------------------------------


def test_an_unreadable_file_is_named_with_how_to_start_a_project(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "missing.yaml")
    assert str(caught.value) == ("cannot read config: No such file or directory (`yonglink init DIR` writes a"
                                 f" starter project) ({tmp_path / 'missing.yaml'})")


def test_a_yaml_syntax_error_names_its_line_and_where_the_open_bracket_began(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL.replace("    routes: [\"*\"]", "    routes: [\"*\"\n    file_x: 1"))
    assert err.line == 14
    assert "YAML syntax error" in str(err) and "that starts at line 13" in str(err)


def test_a_duplicate_key_names_both_lines(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL.replace("    path: var/test.db\n",
                                             "    path: var/test.db\n    path: x.db\n"))
    assert (err.line, err.key) == (4, "engine.store.path")
    assert "duplicate key (first at line 3)" in str(err)


def test_a_duplicate_section_names_the_line_of_the_first_key(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL + "engine:\n  store: {path: other.db}\n")
    assert (err.line, err.key) == (16, "engine")
    assert "duplicate key (first at line 1)" in str(err)


def test_an_unset_variable_without_default_suggests_one(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL.replace("var/test.db", "${STORE_PATH}"))
    assert err.line == 3
    assert "environment variable STORE_PATH is not set (use ${STORE_PATH:-default})" in str(err)


def test_an_unknown_key_suggests_the_closest_known_one(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL.replace("      ack: on_receipt\n",
                                             "      ack: on_receipt\n      max_frame_byte: 1MiB\n"))
    assert str(err) == ("channels[0].mllp.max_frame_byte: unknown key, did you mean max_frame_bytes?"
                        f" ({tmp_path / 'config.yaml'}:10)")


def test_an_unknown_key_like_no_other_lists_the_allowed_ones(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL.replace("    path: var/test.db\n",
                                             "    path: var/test.db\n    zzz: 1\n"))
    assert (err.line, err.key) == (4, "engine.store.zzz")
    assert ("unknown key (allowed: backend, dedupe_window, dsn, max_size, path, readers, retention_days,"
            " type)") in str(err)


def test_a_misspelt_value_suggests_the_closest_allowed_one(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL.replace("ack: on_receipt", "ack: on_reciept"))
    assert (err.line, err.key) == (9, "channels[0].mllp.ack")
    assert "'on_reciept' is not allowed, did you mean on_receipt?" in str(err)


def test_a_misspelt_connector_type_suggests_the_closest_one(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL.replace("type: mllp", "type: mlp"))
    assert (err.line, err.key) == (6, "channels[0].type")
    assert "'mlp' is not allowed, did you mean mllp?" in str(err)


@pytest.mark.parametrize(("old", "new", "line", "hint"), [
    ("    path: var/test.db\n", "    path: var/test.db\n    dedupe_window: 5 weeks\n", 4,
     "engine.store.dedupe_window: expected a duration such as 500ms, 30s, 5m, 24h or 7d, got '5 weeks'"),
    ("      ack: on_receipt\n", "      ack: on_receipt\n      max_frame_bytes: 1 meg\n", 10,
     "channels[0].mllp.max_frame_bytes: expected a size such as 65536, 512KiB, 1MiB or 10MB, got '1 meg'"),
    ("listen: 127.0.0.1:0", "listen: localhost", 8,
     "channels[0].mllp.listen: expected host:port such as 127.0.0.1:2575 (port 0 picks a free port),"
     " got 'localhost'"),
    ("  - name: outbox", "  - name: out box", 11,
     "destinations[0].name: expected a name of letters, digits, '_', '.' and '-' starting with a letter"
     " or digit, got 'out box'"),
], ids=["duration", "size", "listen", "name"])
def test_a_malformed_value_says_what_to_write(tmp_path: Path, old: str, new: str, line: int,
                                              hint: str) -> None:
    err = error_of(tmp_path, MINIMAL.replace(old, new))
    assert err.line == line
    assert hint in str(err)


def test_a_missing_required_key_is_named(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL.replace("    mllp:\n      listen: 127.0.0.1:0\n", "    mllp:\n"))
    assert (err.line, err.key) == (8, "channels[0].mllp")  # the section's first line
    assert "missing required key listen" in str(err)


def test_a_value_of_the_wrong_type_is_named(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL.replace("    routes: [\"*\"]\n", "    routes: [\"*\"]\n    keys: 3\n"))
    assert (err.line, err.key) == (14, "destinations[0].keys")


def test_a_duplicate_channel_name_names_the_first(tmp_path: Path) -> None:
    second = "  - name: his-adt\n    type: mllp\n    mllp: {listen: 127.0.0.1:0}\n"
    err = error_of(tmp_path, MINIMAL.replace("destinations:\n", second + "destinations:\n"))
    assert (err.line, err.key) == (10, "channels[1].name")
    assert "duplicate channel name 'his-adt' (first at line 5)" in str(err)


def test_several_problems_are_all_listed_in_line_order(tmp_path: Path) -> None:
    text = MINIMAL.replace("ack: on_receipt", "ack: on_reciept") \
                  .replace("var/test.db", "var/test.db\n    zzz: 1")
    err = error_of(tmp_path, text)
    assert [line.rsplit(":", 1)[-1] for line in str(err).splitlines()] == ["4)", "10)"]


def test_a_routes_glob_that_matches_nothing_names_its_line_and_where_it_looked(tmp_path: Path) -> None:
    text = MINIMAL.replace("routes: []", "routes:\n  - mapings/*.yaml")
    config = load_config(write(tmp_path, text), env={})
    with pytest.raises(ConfigError) as caught:
        expand_routes(config.routes, config=config)
    err = caught.value
    assert (err.file, err.line, err.key) == (str(tmp_path / "config.yaml"), 16, "routes[0]")
    assert "matches no file (paths are relative to the config file's folder)" in str(err)


def test_a_channel_naming_an_unknown_route_suggests_the_closest(tmp_path: Path) -> None:
    text = MINIMAL.replace("      ack: on_receipt\n", "      ack: on_receipt\n    routes: [adt_persn]\n") \
                  .replace("routes: []", f"routes:\n  - {REPO / 'mappings' / 'adt_person.yaml'}")
    config = load_config(write(tmp_path, text), env={})
    with pytest.raises(ConfigError) as caught:
        load_router(config)
    err = caught.value
    assert (err.file, err.line) == (str(tmp_path / "config.yaml"), 10)
    assert "channel 'his-adt' names unknown route 'adt_persn', did you mean adt_person?" in str(err)


# --- engine.store.backend ------------------------------------------------------------------------------


def test_a_postgres_store_takes_its_dsn_from_the_environment(tmp_path: Path) -> None:
    store_section = "    backend: postgres\n    dsn: ${YONGLINK_PG_DSN}\n    readers: 4\n"
    file = write(tmp_path, MINIMAL.replace("    path: var/test.db\n", store_section))
    config = load_config(file, env={"YONGLINK_PG_DSN": "postgresql://yl@db.example/yonglink"})
    store = config.engine.store
    assert (store.backend.value, store.dsn, store.readers) == (
        "postgres", "postgresql://yl@db.example/yonglink", 4)


def test_the_store_backend_is_sqlite_unless_told(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), env={})
    assert config.engine.store.backend.value == "sqlite" and config.engine.store.dsn is None


@pytest.mark.parametrize(("old", "new", "line", "key", "hint"), [
    ("    path: var/test.db\n", "    backend: postgres\n", 3, "engine.store.backend",
     "backend postgres needs engine.store.dsn"),
    ("    path: var/test.db\n", "    backend: postgres\n    dsn: postgresql:///y\n    max_size: 1GiB\n", 5,
     "engine.store.max_size", "max_size is for backend sqlite; backend postgres uses dsn"),
    ("    path: var/test.db\n", "    backend: postgres\n    dsn: postgresql:///y\n    path: y.db\n", 5,
     "engine.store.path", "path is for backend sqlite"),
    ("    path: var/test.db\n", "    path: var/test.db\n    dsn: postgresql:///y\n", 4, "engine.store.dsn",
     "dsn is for backend postgres; set engine.store.backend: postgres"),
    ("    path: var/test.db\n", "    backend: postgress\n", 3, "engine.store.backend",
     "'postgress' is not allowed, did you mean postgres?"),
])
def test_store_keys_that_contradict_the_backend_are_named_with_their_line(
        tmp_path: Path, old: str, new: str, line: int, key: str, hint: str) -> None:
    err = error_of(tmp_path, MINIMAL.replace(old, new))
    assert (err.line, err.key) == (line, key)
    assert hint in str(err)
