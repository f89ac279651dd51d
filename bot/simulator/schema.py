"""Every send body checked against Meta's own OpenAPI description of `POST /{phone_number_id}/messages`.

`meta_openapi/business-messaging-api_v23.0.json` is an unchanged extract of `business-messaging-api_v23.0.yaml`
from github.com/facebook/openapi (MIT, see `meta_openapi/LICENSE`). Meta's file has errata that refuse bodies
Graph takes (every text message, the first quick-reply button, …); `CORRECTIONS` patches each one after loading,
and docs/whatsapp.md#metas-openapi-description-corrections-we-apply says why.

The check runs on every send, so it is built once per app: the corrected schemas are inlined (every `$ref`
resolved) and compiled into one validator per message `type`, chosen by the description's own discriminator,
which also keeps the error to the branch the body meant instead of "not valid under any of the given schemas".
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import ValidationError, best_match  # type: ignore[import-untyped]

from bot.simulator.validation import GraphError

SPEC = Path(__file__).parent / "meta_openapi" / "business-messaging-api_v23.0.json"
SCHEMAS = "#/components/schemas/"
# Keywords that only annotate: dropped from the compiled schemas, since jsonschema visits every keyword of every
# subschema it passes through, and the check must cost a benchmark at 1,000 msg/s as little as it can.
ANNOTATIONS = frozenset({"description", "example", "examples", "discriminator", "title", "externalDocs"})
# What `error_data.details` quotes of a refusal: the rule and where, not a whole 4 KB text echoed back.
MAX_DETAILS = 300

Schemas = dict[str, Any]


@dataclass(frozen=True)
class Correction:
    """One erratum of Meta's file, fixed in place (docs/whatsapp.md lists the same, in the same order)."""

    name: str
    why: str
    apply: Callable[[Schemas], None]


def _base_properties(schemas: Schemas) -> None:
    base = schemas["BaseMessageProperties"]
    base["properties"]["biz_opaque_callback_data"] = {"type": "string", "maxLength": 512}
    base["properties"]["recipient"] = {"type": "string", "description": "A business-scoped user id (BSUID)."}
    base["required"] = [name for name in base["required"] if name not in ("to", "recipient_type")]
    base["anyOf"] = [{"required": ["to"]}, {"required": ["recipient"]}]


def _closed_messages(schemas: Schemas) -> None:
    # `additionalProperties: false` inside one `allOf` branch sees only that branch's `properties`, so it refuses
    # `messaging_product`, `to`, … from BaseMessageProperties: every such message fails. One object instead.
    for schema in schemas.values():
        parts = schema.get("allOf")
        if not isinstance(parts, list) or len(parts) != 2 or parts[0] != {"$ref": SCHEMAS + "BaseMessageProperties"}:
            continue
        own = parts[1]
        if own.get("additionalProperties") is not False:
            continue
        base = schemas["BaseMessageProperties"]
        merged = {key: value for key, value in base.items() if key not in ("properties", "required", "description")}
        merged["properties"] = {**base["properties"], **own["properties"]}
        merged["required"] = list(dict.fromkeys([*base.get("required", []), *own.get("required", [])]))
        merged["additionalProperties"] = False
        del schema["allOf"]
        schema.update(merged)


def _language_policy(schemas: Schemas) -> None:
    schemas["LanguageObject"]["required"] = ["code"]


def _button_index(schemas: Schemas) -> None:
    index = {
        "description": "Position index of the button (0-9).",
        "anyOf": [{"type": "string", "pattern": "^[0-9]$"}, {"type": "integer", "minimum": 0, "maximum": 9}],
    }
    schemas["TemplateComponent"]["properties"]["index"] = index
    schemas["ButtonComponent"]["allOf"][1]["properties"]["index"] = index


# The inbound (webhook) message schemas were renamed with a suffix where their names clashed with the send
# schemas (`TextMessage_2`, `BaseMessageProperties_1`, …), but the `$ref`s to them were not renamed.
WEBHOOK_MESSAGES = {
    "TextMessage": "TextMessage_2",
    "ReactionMessage": "ReactionMessage_1",
    "AudioMessage": "AudioMessage_1",
    "DocumentMessage": "DocumentMessage_1",
    "ImageMessage": "ImageMessage_1",
    "StickerMessage": "StickerMessage_1",
    "VideoMessage": "VideoMessage_1",
    "LocationMessage": "LocationMessage_1",
}


def _renamed_refs(schemas: Schemas) -> None:
    incoming = schemas["IncomingMessage"]
    renamed = {SCHEMAS + old: SCHEMAS + new for old, new in WEBHOOK_MESSAGES.items()}
    incoming["oneOf"] = [{"$ref": renamed.get(part["$ref"], part["$ref"])} for part in incoming["oneOf"]]
    mapping = incoming["discriminator"]["mapping"]
    for kind, target in mapping.items():
        mapping[kind] = renamed.get(target, target)
    for part in incoming["oneOf"]:
        allof = schemas[part["$ref"].removeprefix(SCHEMAS)]["allOf"]
        if allof[0] == {"$ref": SCHEMAS + "BaseMessageProperties"}:
            allof[0] = {"$ref": SCHEMAS + "BaseMessageProperties_1"}


def _inbound_user_ids(schemas: Schemas) -> None:
    base = schemas["BaseMessageProperties_1"]
    base["properties"]["from_user_id"] = {"type": "string", "description": "The sender's business-scoped user id."}
    base["required"] = [name for name in base["required"] if name != "from"]
    base["anyOf"] = [{"required": ["from"]}, {"required": ["from_user_id"]}]


def _reply_context(schemas: Schemas) -> None:
    schemas["ContextObject"]["required"] = ["from", "id"]


CORRECTIONS = (
    Correction(
        "callback data on every message",
        "`biz_opaque_callback_data` is missing from BaseMessageProperties, so closed message types (text, "
        "interactive, media) refuse it; a `recipient` (BSUID) may replace `to`; `recipient_type` is optional",
        _base_properties,
    ),
    Correction(
        "closed allOf",
        "`additionalProperties: false` in an `allOf` branch refuses the other branch's properties",
        _closed_messages,
    ),
    Correction("language policy", "`language.policy` is required, but Meta documents it as optional", _language_policy),
    Correction(
        "button index", "the `index` pattern `^[2-6, 11-14]$` is a character class: it refuses 0", _button_index
    ),
    Correction(
        "renamed webhook schemas",
        "IncomingMessage and its messages name the send schemas, not their renamed webhook copies",
        _renamed_refs,
    ),
    Correction(
        "inbound from user ids",
        "`from` is required, but a user with a username writes with `from_user_id` alone",
        _inbound_user_ids,
    ),
    Correction(
        "reply context",
        "ContextObject requires `referred_product`, which only product enquiries carry",
        _reply_context,
    ),
)


def load_schemas(corrections: Iterable[Correction] = CORRECTIONS) -> Schemas:
    """Meta's component schemas with `corrections` applied (each a fresh copy: nothing is shared between apps)."""
    schemas: Schemas = copy.deepcopy(json.loads(SPEC.read_bytes())["components"]["schemas"])
    for correction in corrections:
        correction.apply(schemas)
    return schemas


def inline(schema: Any, schemas: Schemas, seen: tuple[str, ...] = ()) -> Any:
    """`schema` with every `$ref` replaced by the schema it names (siblings of a `$ref` kept beside it) and
    its annotations left out."""
    if isinstance(schema, list):
        return [inline(item, schemas, seen) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.removeprefix(SCHEMAS)
        if name in seen:
            raise ValueError(f"$ref cycle through {' -> '.join((*seen, name))}")
        target = inline(schemas[name], schemas, (*seen, name))
        siblings = {key: value for key, value in schema.items() if key != "$ref" and key not in ANNOTATIONS}
        return {**siblings, "allOf": [target]} if siblings else target
    inlined: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ANNOTATIONS:
            # `discriminator` too: a hint (OpenAPI 3.1) whose mapping is never followed here.
            continue
        if key == "properties" and isinstance(value, dict):
            # Property names are not keywords: a property may well be called `description`.
            inlined[key] = {name: inline(sub, schemas, seen) for name, sub in value.items()}
        else:
            inlined[key] = inline(value, schemas, seen)
    return inlined


def _where(error: ValidationError) -> str:
    path = "".join(f"[{part}]" if isinstance(part, int) else f"['{part}']" for part in error.absolute_path)
    if not path:
        return "Request body"
    head, _, rest = path[2:].partition("']")
    return f"Param {head}{rest}"


def describe(error: ValidationError) -> str:
    """One line for `error_data.details`: where the body broke the schema, and the schema's own words."""
    details = f"{_where(error)}: {error.message}"
    return details if len(details) <= MAX_DETAILS else details[: MAX_DETAILS - 1] + "…"


class DiscriminatedValidator:
    """A `oneOf` with a discriminator, compiled as one validator per discriminator value."""

    def __init__(self, root: str, schemas: Schemas) -> None:
        union = schemas[root]
        self.property = union["discriminator"]["propertyName"]
        self.branches = {
            value: Draft202012Validator(inline({"$ref": target}, schemas))
            for value, target in union["discriminator"]["mapping"].items()
        }
        self.union = Draft202012Validator(inline({"$ref": SCHEMAS + root}, schemas))

    def error(self, instance: object) -> ValidationError | None:
        """The most relevant error of `instance`, or None when it is valid."""
        kind = instance.get(self.property) if isinstance(instance, dict) else None
        validator = self.branches.get(kind) if isinstance(kind, str) else None
        validator = validator or self.union
        if validator.is_valid(instance):
            return None
        found: ValidationError | None = best_match(validator.iter_errors(instance))
        return found


class SendSchema:
    """`POST …/messages` bodies (and, for tests, inbound messages) against Meta's corrected description."""

    def __init__(self) -> None:
        schemas = load_schemas()
        self.sends = DiscriminatedValidator("Message", schemas)
        self.inbound = DiscriminatedValidator("IncomingMessage", schemas)

    def check(self, body: object) -> None:
        """Raise Graph's 100 "Invalid parameter" when the description refuses `body`."""
        error = self.sends.error(body)
        if error is not None:
            raise GraphError(400, 100, "Invalid parameter", describe(error))

    def inbound_problem(self, message: object) -> str | None:
        """Why a webhook `messages[]` item does not fit Meta's description, or None."""
        error = self.inbound.error(message)
        return None if error is None else describe(error)
