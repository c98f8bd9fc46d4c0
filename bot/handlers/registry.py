"""The one table from callback event to handler."""

from __future__ import annotations

from bot.dispatch import Registry
from bot.gateway.events import (
    AddExternalContact,
    AddHalfExternalContact,
    DelExternalContact,
    DelFollowUser,
    EditExternalContact,
    ExternalChatCreate,
    ExternalChatDismiss,
    ExternalChatUpdate,
    ExternalTagCreate,
    ExternalTagDelete,
    ExternalTagShuffle,
    ExternalTagUpdate,
    TextMessage,
    TransferFail,
)
from bot.handlers import contacts, groups, optout, tags


def build_registry() -> Registry:
    """Every handler the mirror needs; later capabilities register theirs here too."""
    registry = Registry()
    registry.register(AddExternalContact.key, contacts.on_add_external_contact)
    registry.register(AddHalfExternalContact.key, contacts.on_add_half_external_contact)
    registry.register(EditExternalContact.key, contacts.on_edit_external_contact)
    registry.register(DelExternalContact.key, contacts.on_del_external_contact)
    registry.register(DelFollowUser.key, contacts.on_del_follow_user)
    registry.register(TransferFail.key, contacts.on_transfer_fail)
    registry.register(ExternalChatCreate.key, groups.on_chat_create)
    registry.register(ExternalChatUpdate.key, groups.on_chat_update)
    registry.register(ExternalChatDismiss.key, groups.on_chat_dismiss)
    registry.register(ExternalTagCreate.key, tags.on_tag_create)
    registry.register(ExternalTagUpdate.key, tags.on_tag_update)
    registry.register(ExternalTagDelete.key, tags.on_tag_delete)
    registry.register(ExternalTagShuffle.key, tags.on_tag_shuffle)
    registry.register(TextMessage.key, optout.on_text_message)
    return registry
