"""The skill template from the seed (``../shared/SEED.md``), verbatim: hearth must run it unchanged."""

SEED_TEMPLATE = '''\
from skill_sdk import Skill, intent

class CalendarSkill(Skill):
    @intent("schedule_meeting")
    def handle_schedule(self, params):
        start_time = params.get("start")
        duration = params.get("duration")
        # call a calendar API to create the meeting
        return {"status": "confirmed", "meeting_id": "12345"}
'''
