"""The shared SQL pieces (``central_api.core.sqlbits``) do what their callers rely on, on
SQLite and PostgreSQL: a list as one parameter matches exactly its members, whatever
their characters, and the driver's own parameter mark binds."""

from __future__ import annotations

from sqlalchemy import Engine, String, literal, select, union_all

from central_api.core.sqlbits import list_param, one_of, placeholder


def test_one_of_matches_exactly_the_listed_values_given_as_one_parameter(engine: Engine) -> None:
    held = union_all(
        *(select(literal(code, String).label("code")) for code in ("A-1", "it's", "货品", "%"))
    ).subquery("held")
    wanted = ["it's", "货品", "%", "not held"]
    with engine.connect() as connection:
        statement = select(held.c.code).where(one_of(connection, held.c.code, "codes"))
        found = connection.execute(statement, {"codes": list_param(connection, wanted)})
        assert sorted(found.scalars()) == sorted(["it's", "货品", "%"])
        nothing = connection.execute(statement, {"codes": list_param(connection, [])})
        assert nothing.all() == []
        # One bound parameter whatever the list's length: the statement's text is the same.
        condition = one_of(connection, held.c.code, "codes").compile(connection)
        assert list(condition.params) == ["codes"]


def test_placeholder_is_the_drivers_own_mark(engine: Engine) -> None:
    with engine.connect() as connection:
        mark = placeholder(connection.dialect)
        echoed = connection.exec_driver_sql(f"SELECT {mark}", ("货品",)).scalar_one()
    assert echoed == "货品"
