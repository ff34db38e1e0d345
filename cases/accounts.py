"""Who may use City Patrol: users with passwords, their login sessions, and
long-lived API tokens for machines (the city's case platform, monitoring).

A library like the rest of ``cases/``: it knows nothing of HTTP or settings
files. The tables live in the case store's database (same metadata, prepared with
the store's schema: ``schema.py``), so SQLite and PostgreSQL both work and one backup holds
everything.

Secrets are never stored:

* passwords as scrypt hashes (``hashlib.scrypt``: a memory-hard KDF in the
  standard library, so no new dependency) with a random salt per password and
  the cost parameters inside the hash string, so the cost can be raised later
  and old hashes still verify (and are re-hashed at the next login);
* session and API tokens as SHA-256 of the token. A token is 256 random bits,
  so a fast hash is enough (nothing to brute-force) and lets the lookup be one
  indexed query per request.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Boolean, ForeignKey, Integer, String, delete, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from . import audit
from .failed_logins import UnknownNameFailures
from .store import Base, Store, utcnow

USER_ROLES = ("analyst", "operator", "admin")  # people, who log in with a password
TOKEN_ROLES = ("platform", "monitoring", "telemetry")  # machines, with an API token (telemetry: position senders)
ROLES = USER_ROLES + TOKEN_ROLES

SESSION_PREFIX = "pcs_"  # patrol console session
TOKEN_PREFIX = "pat_"  # patrol API token
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 8
MAX_TOKEN_DAYS = 36500  # a century: longer is "until revoked" (days=None), and overflows a date


class AccountError(ValueError):
    """Bad input for an account operation (a name taken, a weak password, an unknown role)."""


class AccountNotFound(AccountError, LookupError):
    pass


class Unauthenticated(Exception):
    """A login or a credential that does not hold; the message says why, for the person."""


# ---------------------------------------------------------------- passwords


@dataclass(frozen=True)
class Scrypt:
    """scrypt cost. The default follows OWASP's password storage guidance for
    scrypt (N=2^15, r=8, p=3: 32 MiB and ~0.3 s per hash on one core)."""

    n: int = 2**15
    r: int = 8
    p: int = 3

    def hash(self, password: str) -> str:
        salt = secrets.token_bytes(16)
        key = _scrypt(password, salt, self.n, self.r, self.p)
        return f"scrypt${self.n}${self.r}${self.p}${_b64(salt)}${_b64(key)}"

    def is_current(self, stored: str) -> bool:
        return stored.startswith(f"scrypt${self.n}${self.r}${self.p}$")


DEFAULT_KDF = Scrypt()


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches the stored hash (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(key)
        got = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False  # a malformed hash matches nothing
    return hmac.compare_digest(got, want)


# Each scrypt computation holds 128*r*n bytes (32 MiB at the default cost): however many
# requests ask at once, this many run and the rest wait, so memory stays bounded.
# (The login route also queues its checks without holding threads: api/login_guard.py.)
MAX_HASHING = 4
_hashing = threading.BoundedSemaphore(MAX_HASHING)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    with _hashing:
        return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * r * n + 2**20, dklen=32)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ---------------------------------------------------------------- tables


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(200))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(String(80))
    disabled_at: Mapped[datetime | None]


class LoginSession(Base):
    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    ended_at: Mapped[datetime | None]  # logged out, or ended by disabling the user


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(String(80))
    expires_at: Mapped[datetime | None]  # None: until revoked
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(80))




# ---------------------------------------------------------------- views


@dataclass(frozen=True)
class Principal:
    """Who is asking: a logged-in user, or a machine by API token.

    ``username`` is what the audit trail records: the user's name, or
    ``token:<name>`` for an API token (so a token can never pass for a person).
    """

    username: str
    role: str
    user_id: int | None = None


class _View(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class UserView(_View):
    id: int
    username: str
    role: str
    disabled: bool
    created_at: datetime
    created_by: str | None
    disabled_at: datetime | None


class TokenView(_View):
    id: int
    name: str
    role: str
    created_at: datetime
    created_by: str | None
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None


class Login(_View):
    token: str
    expires_at: datetime
    user: UserView


class NewToken(_View):
    token: str  # shown once; only its hash is kept
    info: TokenView


class Accounts:
    """Users, sessions and API tokens in the case store's database."""

    def __init__(self, store: Store, *, session_hours: float = 12.0, kdf: Scrypt = DEFAULT_KDF,
                 unknown_window_s: float = 60.0):
        if session_hours <= 0:
            raise AccountError(f"session_hours must be positive, not {session_hours:g}")
        self.store = store
        self.session_length = timedelta(hours=session_hours)
        self.kdf = kdf
        # verifying against this when the user is unknown takes as long as a real check,
        # so response time does not tell which usernames exist
        self._dummy_hash = kdf.hash(secrets.token_urlsafe(16))
        self.unknown_names = UnknownNameFailures(self._record_alone, unknown_window_s)

    def _read(self) -> Session:
        return Session(self.store.engine, expire_on_commit=False)

    def _record_alone(self, actor: str, action: str, target: str, detail: dict) -> None:
        """An audit row for something that changes no other row (a failed login)."""
        with self.store.transaction() as s:
            _record(s, actor, action, target, detail)

    # -- users -------------------------------------------------------------------------

    def add_user(self, username: str, role: str, password: str, *, by: str | None = None) -> UserView:
        username = (username or "").strip()
        if not USERNAME.match(username):
            raise AccountError(f"username {username!r} must be 1-64 letters, digits or . _ @ - "
                               "(starting with a letter or digit)")
        if role not in USER_ROLES:
            hint = f" ({', '.join(TOKEN_ROLES)} are for API tokens: create a token)" if role in TOKEN_ROLES else ""
            raise AccountError(f"role {role!r} is not a user role; one of {', '.join(USER_ROLES)}{hint}")
        _check_password(password)
        hashed = self.kdf.hash(password)
        with self.store.transaction() as s:
            if s.scalar(select(User.id).where(User.username == username)) is not None:
                raise AccountError(f"user {username!r} already exists")
            user = User(username=username, role=role, password_hash=hashed, disabled=False, created_at=utcnow(),
                        created_by=by)
            s.add(user)
            s.flush()
            _record(s, by or "system:accounts", "user.add", f"user:{username}", {"role": role})
            return UserView.model_validate(user)

    def users(self) -> list[UserView]:
        with self._read() as s:
            return [UserView.model_validate(u) for u in s.scalars(select(User).order_by(User.username))]

    def get_user(self, username: str) -> UserView | None:
        with self._read() as s:
            user = s.scalar(select(User).where(User.username == username))
            return UserView.model_validate(user) if user else None

    def count_users(self) -> int:
        with self._read() as s:
            return s.scalar(select(func.count()).select_from(User))

    def set_password(self, username: str, password: str, *, by: str | None = None) -> UserView:
        """A new password; every open session of the user ends (log in again everywhere)."""
        _check_password(password)
        hashed = self.kdf.hash(password)
        with self.store.transaction() as s:
            user = _user_or_raise(s, username)
            user.password_hash = hashed
            ended = _end_sessions(s, user.id)
            _record(s, by or username, "user.password", f"user:{username}", {"sessions_ended": ended})
            return UserView.model_validate(user)

    def change_password(self, username: str, current: str, new: str) -> UserView:
        """The user's own change: the current password first (a borrowed session is not enough)."""
        with self._read() as s:
            user = s.scalar(select(User).where(User.username == username))
        if user is None or not verify_password(current or "", user.password_hash):
            raise Unauthenticated("the current password is wrong")
        return self.set_password(username, new, by=username)

    def disable_user(self, username: str, *, by: str | None = None) -> UserView:
        """The user can no longer log in; their sessions end now. Kept, not deleted:
        the audit trail names them."""
        with self.store.transaction() as s:
            user = _user_or_raise(s, username)
            if user.disabled:
                return UserView.model_validate(user)
            if user.role == "admin":
                admins = s.scalar(select(func.count()).select_from(User)
                                  .where(User.role == "admin", User.disabled.is_(False)))
                if admins <= 1:
                    raise AccountError(f"{username!r} is the last active admin; add another admin first")
            user.disabled, user.disabled_at = True, utcnow()
            ended = _end_sessions(s, user.id)
            _record(s, by or "system:accounts", "user.disable", f"user:{username}", {"sessions_ended": ended})
            return UserView.model_validate(user)

    # -- sessions ----------------------------------------------------------------------

    def login(self, username: str, password: str, *, now: datetime | None = None,
              address: str | None = None) -> Login:
        """Check the password and open a session. The same message for an unknown
        user and a wrong password, so a login form does not reveal who exists.
        ``address``: the client's, for the audit trail."""
        username = (username or "").strip()
        with self._read() as s:
            user = s.scalar(select(User).where(User.username == username))
        if user is None or not verify_password(password or "", user.password_hash):
            if user is None:
                verify_password(password or "", self._dummy_hash)
                self.unknown_names.note(username, address)  # invented names: counted, not a row each
            else:
                self._record_alone(username, "auth.login_failed", f"user:{username}",
                                   {"why": "wrong username or password", "address": address})
            raise Unauthenticated("wrong username or password")
        if user.disabled:
            self._record_alone(username, "auth.login_failed", f"user:{username}", {"why": "account disabled"})
            raise Unauthenticated(f"the account {username!r} is disabled; ask an admin")
        rehash = None if self.kdf.is_current(user.password_hash) else self.kdf.hash(password)
        return self.start_session(username, now=now, audit=True, rehash=rehash)

    def start_session(self, username: str, *, now: datetime | None = None, audit: bool = False,
                      rehash: str | None = None) -> Login:
        """A session for a user without a password check: for ``login`` above and for
        tools that already know who it is (tests). Never exposed over HTTP."""
        now = now or utcnow()
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        with self.store.transaction() as s:
            user = _user_or_raise(s, username)
            if user.disabled:
                raise Unauthenticated(f"the account {user.username!r} is disabled; ask an admin")
            if rehash:  # the KDF cost was raised since this hash was made: upgrade it
                user.password_hash = rehash
            # long-expired sessions are dead weight: drop them as new ones are made
            s.execute(delete(LoginSession).where(LoginSession.expires_at < now - timedelta(days=1)))
            row = LoginSession(token_hash=token_hash(token), user_id=user.id, created_at=now,
                               expires_at=now + self.session_length)
            s.add(row)
            s.flush()
            if audit:
                _record(s, user.username, "auth.login", f"user:{user.username}",
                        {"role": user.role, "session": row.id, "expires_at": row.expires_at.isoformat()})
            return Login(token=token, expires_at=row.expires_at, user=UserView.model_validate(user))

    def logout(self, token: str) -> bool:
        """End the session of this token; False when it was no open session."""
        with self.store.transaction() as s:
            row = s.scalar(select(LoginSession).where(LoginSession.token_hash == token_hash(token or "")))
            if row is None or row.ended_at is not None:
                return False
            row.ended_at = utcnow()
            user = s.get(User, row.user_id)
            _record(s, user.username, "auth.logout", f"user:{user.username}", {"session": row.id})
            return True

    # -- API tokens --------------------------------------------------------------------

    def create_token(self, name: str, role: str = "platform", *, days: float | None = None,
                     by: str | None = None) -> NewToken:
        name = (name or "").strip()
        if not USERNAME.match(name):
            raise AccountError(f"token name {name!r} must be 1-64 letters, digits or . _ @ -")
        if role not in TOKEN_ROLES:
            raise AccountError(f"role {role!r} is not a token role; one of {', '.join(TOKEN_ROLES)}")
        if days is not None and not 0 < days <= MAX_TOKEN_DAYS:
            raise AccountError(f"days must be more than 0 and at most {MAX_TOKEN_DAYS}, not {days:g}")
        now = utcnow()
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.store.transaction() as s:
            row = ApiToken(name=name, role=role, token_hash=token_hash(token), created_at=now, created_by=by,
                           expires_at=now + timedelta(days=days) if days is not None else None)
            s.add(row)
            s.flush()
            info = TokenView.model_validate(row)
            _record(s, by or "system:accounts", "token.create", f"token:{info.id}",
                    {"name": name, "role": role, "expires_at": info.expires_at.isoformat() if info.expires_at else None})
        return NewToken(token=token, info=info)

    def tokens(self) -> list[TokenView]:
        with self._read() as s:
            return [TokenView.model_validate(t) for t in s.scalars(select(ApiToken).order_by(ApiToken.id))]

    def revoke_token(self, token_id: int, *, by: str | None = None) -> TokenView:
        with self.store.transaction() as s:
            row = s.get(ApiToken, token_id)
            if row is None:
                raise AccountNotFound(f"no API token with id {token_id}")
            if row.revoked_at is None:
                row.revoked_at, row.revoked_by = utcnow(), by
                s.flush()
                _record(s, by or "system:accounts", "token.revoke", f"token:{token_id}", {"name": row.name})
            return TokenView.model_validate(row)

    # -- every request -----------------------------------------------------------------

    def authenticate(self, token: str, *, now: datetime | None = None) -> Principal:
        """The principal a session or API token stands for; Unauthenticated says why not."""
        now = now or utcnow()
        token = token or ""
        digest = token_hash(token)
        with self._read() as s:
            if token.startswith(TOKEN_PREFIX):
                row = s.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
                if row is None:
                    raise Unauthenticated("unknown API token")
                if row.revoked_at is not None:
                    raise Unauthenticated(f"API token {row.name!r} was revoked")
                if row.expires_at is not None and row.expires_at <= now:
                    raise Unauthenticated(f"API token {row.name!r} expired at {row.expires_at:%Y-%m-%d %H:%M} UTC")
                return Principal(username=f"token:{row.name}", role=row.role, user_id=None)
            found = s.execute(select(LoginSession, User).join(User, User.id == LoginSession.user_id)
                              .where(LoginSession.token_hash == digest)).first()
            if found is None:
                raise Unauthenticated("not logged in (unknown session); log in again")
            session, user = found
            if session.ended_at is not None:
                raise Unauthenticated("the session has ended (logged out); log in again")
            if session.expires_at <= now:
                raise Unauthenticated("the session has expired; log in again")
            if user.disabled:
                raise Unauthenticated(f"the account {user.username!r} is disabled")
            return Principal(username=user.username, role=user.role, user_id=user.id)


def _check_password(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise AccountError("a password may have at most 1024 characters")


def _user_or_raise(s: Session, username: str) -> User:
    user = s.scalar(select(User).where(User.username == username))
    if user is None:
        raise AccountNotFound(f"no user {username!r}")
    return user


def _end_sessions(s: Session, user_id: int) -> int:
    result = s.execute(update(LoginSession).where(LoginSession.user_id == user_id, LoginSession.ended_at.is_(None))
                       .values(ended_at=utcnow()))
    return result.rowcount


def _record(s: Session, actor: str, action: str, target: str, detail: dict) -> None:
    """One row in the audit log, in the transaction of the change it records (last,
    after the row locks, as cases/audit.py asks)."""
    audit.record(s, actor, action, target, detail)
