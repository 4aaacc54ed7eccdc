"""Set-based writes and id lists that take the fast path each dialect offers.

Postgres gets COPY for bulk rows (one stream instead of one INSERT per row)
and a single array parameter for id lists (one plan whatever the list's
length). SQLite gets executemany and expanding ``IN``; there the ledger is
one local file and a statement costs microseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar, cast

import psycopg
from sqlalchemy import ColumnElement, Table, bindparam, func, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import any_
from sqlalchemy.sql.selectable import TableValuedAlias
from sqlalchemy.types import TypeEngine

T = TypeVar("T")


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def insert_rows(
    session: Session,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    """Insert ``rows`` (tuples in ``columns`` order) inside the session's transaction.

    Values go in as Python values: timestamps must be aware UTC datetimes,
    as the ledger's column types would make them.
    """
    if not rows:
        return
    if not is_postgres(session):
        session.execute(
            insert(table), [dict(zip(columns, row, strict=True)) for row in rows]
        )
        return
    # The session's own DBAPI connection, so COPY joins its transaction.
    driver = cast(
        psycopg.Connection[Any], session.connection().connection.driver_connection
    )
    names = ", ".join(columns)
    statement = f"COPY {table.name} ({names}) FROM STDIN"
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def one_of(
    column: ColumnElement[T], name: str, session: Session
) -> ColumnElement[bool]:
    """``column`` equals one of the values in the list bound to ``name``."""
    if is_postgres(session):
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


def insert_if_absent(session: Session, table: Table, values: dict[str, Any]) -> bool:
    """Insert one row unless its primary key exists; True when it was inserted.

    No error on a conflict, so a worker that finds the row taken leaves no
    ERROR line in the database's log.
    """
    dialect = postgresql if is_postgres(session) else sqlite
    statement = (
        dialect.insert(table)
        .values(**values)
        .on_conflict_do_nothing()
        # psycopg reports no row count here; a returned row says it all.
        .returning(*table.primary_key.columns)
    )
    return session.execute(statement).first() is not None


def each_of(name: str, type_: TypeEngine[Any]) -> TableValuedAlias:
    """Postgres: the list bound to ``name`` as rows of one column, ``value``.

    Joined to a lateral subquery, each value becomes its own index lookup;
    the plan then does not depend on the table's statistics, which lag
    behind a table that a backfill grows by thousands of rows a second.
    """
    return (
        func.unnest(bindparam(name, type_=ARRAY(type_)))
        .table_valued("value")
        .render_derived()
    )
