"""Per-user accounts for the single-machine hub: NativeAuthenticator, made safe for a class.

Students sign up at ``/hub/signup`` with a password of their own; a platform admin approves them
at ``/hub/authorize``, and only names the admin's YAML lists may sign up at all. Out of the box
NativeAuthenticator approves a sign-up at once when its name is in ``admin_users`` or
``allowed_users``, so whoever signs up first as ``admin`` (or as a listed student) would own that
name; here nobody is approved by name alone, and the platform admins' accounts are made when the
hub starts, with the password ``ai-console up`` prints, before anyone can sign up as them.

NativeAuthenticator 1.3's own login page does not run on JupyterHub 6 (it uses the removed
``statsd`` and an old ``_render``), so JupyterHub's login page serves ``/hub/login``, with a
link to the sign-up page (``hub_config/templates/login.html``).
"""

from __future__ import annotations

import bcrypt
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.orm import UserInfo
from traitlets import Unicode, default


class ClassAccountsAuthenticator(NativeAuthenticator):
    """NativeAuthenticator with admin approval for every student and pre-made admin accounts."""

    initial_admin_password = Unicode(
        "",
        config=True,
        help="""Password the platform admins' accounts (``admin_users``) get when the hub
        creates them at start; existing accounts keep theirs (an admin may have changed it at
        /hub/change-password). Empty: admins must already have accounts.""",
    )

    @default("minimum_password_length")
    def _minimum_password_length(self) -> int:
        return 8

    @default("allowed_failed_logins")
    def _allowed_failed_logins(self) -> int:
        return 5  # then a pause of seconds_before_next_try: no password guessing at speed

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._make_admin_accounts()

    def get_handlers(self, app) -> list:
        """NativeAuthenticator's pages (sign-up, approval, password change) but its login."""
        return [(path, handler) for path, handler in super().get_handlers(app) if path != r"/login"]

    def get_authed_users(self) -> set[str]:
        """Only accounts an admin approved: a name is never approved for being listed."""
        return {info.username for info in UserInfo.all_users(self.db) if info.is_authorized}

    def create_user(self, username: str, password: str, **kwargs):
        """Sign-up, for names the YAML lists only (when it lists any), never for an admin."""
        name = self.normalize_username(username)
        if name in self.admin_users:
            return None  # admins' accounts are made at start, never by a sign-up
        if self.allowed_users and name not in self.allowed_users:
            self.log.warning("sign-up refused for %r: not in ai-console.yaml", name)
            return None
        return super().create_user(username, password, **kwargs)

    def _make_admin_accounts(self) -> None:
        if not self.initial_admin_password:
            return
        hashed = bcrypt.hashpw(self.initial_admin_password.encode(), bcrypt.gensalt())
        made = False
        for name in sorted(self.admin_users):
            if UserInfo.find(self.db, name) is None:
                self.db.add(UserInfo(username=name, password=hashed, is_authorized=True))
                made = True
        if made:
            self.db.commit()
