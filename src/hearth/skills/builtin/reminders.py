"""Reminders: "remind me in 10 minutes to call mum", delivered to the same conversation on the same
channel, at the right time, even if hearth restarted in between (they are stored, not timers)."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from hearth.sdk import DateTime, Number, Result, Skill, SkillContext, SkillFailed, Text, intent


def _when(moment: datetime, context: SkillContext) -> str:
    local = moment.astimezone(context.tz)
    day = "today" if local.date() == context.now.date() else f"on {local:%a %d %b}"
    return f"{day} at {local:%H:%M}"


class RemindersSkill(Skill):
    """Reminds you of things at the time you say, in the conversation you asked from."""

    name = "reminders"
    version = "1.0.0"
    permissions = ("messages",)

    @intent("remind", slots={"when": DateTime(description="when to remind", day_time=time(9)),
                             "what": Text(description="what to remind about", max_length=500)},
            examples=["remind me {when} to {what}", "remind me to {what} {when}", "set a reminder {when} to {what}",
                      "remind me {when} about {what}", "remind me about {what} {when}",
                      "set a reminder to {what} {when}"])
    async def remind(self, params: dict[str, Any], context: SkillContext) -> Result:
        """Set a reminder that is sent to this conversation at the given time."""
        what: str = params["what"].strip().rstrip(".")
        when: datetime = params["when"]
        reminder_id = await context.messages.send_later(f"⏰ Reminder: {what}", at=when)
        return Result(text=f"OK — I'll remind you {_when(when, context)} to {what}.",
                      data={"id": reminder_id, "at": when.isoformat(), "what": what})

    @intent("list_reminders", examples=["what are my reminders", "list my reminders", "show my reminders",
                                        "which reminders do i have"])
    async def list_reminders(self, params: dict[str, Any], context: SkillContext) -> Result:
        """The reminders still to come."""
        pending = await context.messages.scheduled()
        if not pending:
            return Result(text="You have no reminders.", data={"reminders": []})
        lines = [f"#{r['id']} {_when(r['at'], context)}: {str(r['text']).removeprefix('⏰ Reminder: ')}"
                 for r in pending]
        return Result(text="Your reminders:\n" + "\n".join(lines),
                      data={"reminders": [{"id": r["id"], "at": r["at"].isoformat(), "text": r["text"]}
                                          for r in pending]})

    @intent("cancel_reminder", slots={"reminder": Number(description="the reminder's number", integer=True,
                                                         minimum=1)},
            examples=["cancel reminder {reminder}", "delete reminder {reminder}", "remove reminder {reminder}"],
            side_effects=True)
    async def cancel_reminder(self, params: dict[str, Any], context: SkillContext) -> str:
        """Cancel a reminder by its number."""
        if not await context.messages.cancel(str(params["reminder"])):
            raise SkillFailed(f"There is no upcoming reminder #{params['reminder']}.", code="not_found")
        return f"Reminder #{params['reminder']} is cancelled."
